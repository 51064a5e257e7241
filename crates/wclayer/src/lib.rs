//! Windows container layer import: the backuptar dialect, the tar reader that drives a
//! LayerWriter, and the CIM layer writer with base/child/utility-VM processing.

pub mod backuptar;
mod error;
mod paths;
mod tarstream;
mod writer;

pub use error::{Error, Result};
pub use paths::{parse_entry_name, EntryName};
pub use tarstream::{decompressed, detect_compression, write_layer_from_tar, Compression, Progress, TarStats};
pub use writer::{LayerWriter, RecordedOp, RecordingLayerWriter};
