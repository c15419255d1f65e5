//! Files a run writes and reads: adapter checkpoints (adapter state separate
//! from the frozen base, with metadata), their exports (PEFT, llama.cpp
//! GGUF adapters, merged models), the manifest that ties a run
//! directory's files together, and atomic writes.

mod atomic;
pub mod checkpoint;
pub mod gguf_adapter;
pub mod manifest;
pub mod merge;
mod merge_gguf;
pub mod peft;

pub use atomic::{ensure_writable_dir, read_json_if_exists, sync_parent, temp_path, write_atomic};
pub use checkpoint::{
    ADAPTER_FILE, AdapterMeta, CheckpointError, LEGACY_ADAPTER_FILE, REPORT_FILE, checkpoint_names,
    load_adapter, load_legacy_adapter, read_meta, save_adapter,
};
pub use gguf_adapter::{GgufAdapterExport, export_gguf_adapter};
pub use manifest::{MANIFEST_FILE, Manifest, ManifestError, verify_manifest, write_manifest};
pub use merge::{MergeError, MergeSummary, TASK_MODULES_FILE, merge_adapter};
pub use peft::{PeftAdapter, PeftConfig, PeftError, PeftExport, export_peft, read_peft};
