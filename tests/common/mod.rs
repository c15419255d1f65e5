//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Training runs in one test binary take turns: two runs training at once on
/// the CPU backend can differ in the last bits (measured: the same seed gives
/// other accuracies when another run trains in parallel), and the tests that
/// hold a turn compare runs exactly or to a tolerance set by float
/// reassociation, not by two runs sharing the cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// This test's turn to train (see [`ONE_AT_A_TIME`]); held until dropped.
pub fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A small Rotten Tomatoes run for comparisons: the encoder truncated to 2
/// layers, 320 training and 128 test rows, batch 16, R = 4, S = {1, 2, 4}.
pub fn small_rt_runner(
    method: matryoshka_lora::train::TrainMethod,
) -> matryoshka_lora::train::Runner<matryoshka_lora::tasks::classify::ClassifyTask> {
    use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
    let mut task = ClassifyConfig::rt_protocol(assets_dir());
    task.train_n = Some(320);
    task.test_n = Some(128);
    task.layers = Some(2);
    let train = matryoshka_lora::train::TrainConfig {
        batch: 16,
        rank: 4,
        ranks: vec![1, 2, 4],
        ..Default::default()
    }
    .with_method(method);
    matryoshka_lora::train::Runner::new(ClassifyTask::new(task), train)
        .unwrap()
        .quiet(true)
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

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

/// The real LLM, SmolLM2-135M-Instruct in GGUF Q4_1 (`scripts/fetch-llm.sh`),
/// in `$MLORA_ASSETS` or `assets/`.
pub fn smollm2() -> PathBuf {
    let path = assets_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} missing: run scripts/fetch-llm.sh first",
        path.display()
    );
    path
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
