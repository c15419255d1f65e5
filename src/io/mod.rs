//! Files a run writes and reads: adapter checkpoints (adapter state separate
//! from the frozen base) and atomic writes.

mod atomic;
pub mod checkpoint;

pub use atomic::{temp_path, write_atomic};
pub use checkpoint::{
    ADAPTER_FILE, CheckpointError, REPORT_FILE, checkpoint_names, load_adapter, save_adapter,
};
