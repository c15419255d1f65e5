//! The manifest of a run directory: the sha256 of every file a save wrote,
//! written last. A directory whose files do not match its manifest was not
//! completely written (a save was interrupted after replacing some files),
//! and is refused rather than read as a mix of two runs.

use super::atomic::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The manifest's file name inside a run's output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a save wrote, and the sha256 of each file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The crate version that wrote the directory.
    pub crate_version: String,
    /// File name -> sha256 (hex).
    pub files: BTreeMap<String, String>,
}

/// Why a run directory is not usable.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid JSON of the expected form.
    #[error("{path} is not a run manifest: {reason}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A file differs from (or is missing beside) its manifest entry.
    #[error(
        "{dir} was not completely written: {file} {problem} (a save was interrupted? train again into it)"
    )]
    Incomplete {
        /// The run directory.
        dir: PathBuf,
        /// The file.
        file: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The sha256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// The sha256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the manifest of `files` (names inside `dir`), last and atomically.
pub fn write_manifest(dir: &Path, files: &[&str]) -> Result<Manifest, ManifestError> {
    let mut hashes = BTreeMap::new();
    for name in files {
        let path = dir.join(name);
        let hash = sha256_file(&path).map_err(|source| ManifestError::Io { path, source })?;
        hashes.insert(name.to_string(), hash);
    }
    let manifest = Manifest {
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        files: hashes,
    };
    let path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ManifestError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &json).map_err(|source| ManifestError::Io { path, source })?;
    Ok(manifest)
}

/// Removes the manifest of `dir` (before a save replaces its files), so that
/// an interrupted save cannot leave a manifest that vouches for a mix.
pub fn clear_manifest(dir: &Path) -> Result<(), ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ManifestError::Io { path, source }),
    }
}

/// Checks `dir`'s files against its manifest: `Ok(None)` when there is no
/// manifest (a directory written before manifests existed), the manifest when
/// every listed file is there with its hash, else [`ManifestError::Incomplete`].
pub fn verify_manifest(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ManifestError::Io { path, source }),
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ManifestError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    for (file, hash) in &manifest.files {
        let incomplete = |problem| ManifestError::Incomplete {
            dir: dir.to_path_buf(),
            file: file.clone(),
            problem,
        };
        match sha256_file(&dir.join(file)) {
            Ok(actual) if &actual == hash => {}
            Ok(_) => return Err(incomplete("differs from the manifest")),
            Err(_) => return Err(incomplete("is missing")),
        }
    }
    Ok(Some(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_or_missing_file_is_an_incomplete_save() {
        let dir = std::env::temp_dir().join(format!("mlora-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(verify_manifest(&dir).unwrap().is_none());
        std::fs::write(dir.join("a"), b"adapter").unwrap();
        std::fs::write(dir.join("r"), b"report").unwrap();
        let m = write_manifest(&dir, &["a", "r"]).unwrap();
        assert_eq!(m.files["a"], sha256_hex(b"adapter"));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(verify_manifest(&dir).unwrap(), Some(m));
        std::fs::write(dir.join("a"), b"a newer adapter").unwrap();
        assert!(matches!(
            verify_manifest(&dir),
            Err(ManifestError::Incomplete {
                problem: "differs from the manifest",
                ..
            })
        ));
        std::fs::remove_file(dir.join("a")).unwrap();
        assert!(matches!(
            verify_manifest(&dir),
            Err(ManifestError::Incomplete {
                problem: "is missing",
                ..
            })
        ));
        clear_manifest(&dir).unwrap();
        assert!(verify_manifest(&dir).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
