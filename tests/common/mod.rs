//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The fetched assets (`scripts/fetch-assets.sh`), or `$MLORA_ASSETS`.
pub fn assets_dir() -> PathBuf {
    let dir = std::env::var_os("MLORA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "real assets missing in {}: run scripts/fetch-assets.sh first",
        dir.display()
    );
    dir
}

/// A committed fixture: `tests/fixtures/{relative}`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// Runs the `mlora` binary with `args`: (exit code, stdout, stderr).
pub fn run_mlora(args: &[&str]) -> (i32, String, String) {
    let output = assert_cmd::Command::cargo_bin("mlora")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The Rotten Tomatoes CSV.
pub fn rt_csv() -> PathBuf {
    assets_dir().join("rotten_tomatoes_corpus_full.csv.bz2")
}

/// A temporary directory removed (with its contents) when dropped.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty temporary directory for one test, removed at the end of it.
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("mlora-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Adds a deterministic offset to every adapter factor and head parameter
/// (`B` starts at 0: this gives adapters values worth checking).
#[derive(Default)]
pub struct Perturb {
    path: Vec<String>,
}

impl burn::module::ModuleMapper for Perturb {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::prelude::Tensor<D>>,
    ) -> burn::module::Param<burn::prelude::Tensor<D>> {
        let last = self.path.last().map(String::as_str);
        let trained = matches!(last, Some("lora_a" | "lora_b"))
            || self.path.first().is_some_and(|p| p == "head");
        if !trained {
            return param;
        }
        param.map(|t| {
            let shape = t.shape();
            let n = shape.num_elements();
            let ramp =
                burn::prelude::Tensor::<1, burn::prelude::Int>::arange(0..n as i64, &t.device())
                    .float()
                    .mul_scalar(1e-3)
                    .sin()
                    .reshape(shape);
            t + ramp
        })
    }
}

/// Every parameter value of `module`, tensor by tensor in name order.
pub fn values<M: burn::module::Module>(module: &M) -> Vec<f32> {
    let bytes = module.clone().into_record().into_bytes().unwrap();
    let mut tensors = burn_pack::Reader::from_bytes(bytes)
        .unwrap()
        .into_tensors()
        .unwrap();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    tensors
        .into_iter()
        .flat_map(|t| {
            let (_, _, _, _, data) = t.into_parts().unwrap();
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The largest `|a_i - b_i|` of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
