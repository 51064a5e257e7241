//! Windows container layer import: the backuptar dialect, the tar reader that drives a
//! LayerWriter, and the CIM layer writer with base/child/utility-VM processing, laid out the way
//! containerd's cimfs snapshotter expects; and the way back (`export`, using `treediff`).

#![warn(missing_docs)]

pub mod backuptar;
mod cimlayer;
mod error;
pub mod export;
mod importlock;
pub mod layout;
mod paths;
mod tarstream;
pub mod treediff;
pub mod uvm;
mod writer;

pub use cimlayer::{
    destroy_layer, import_layer, layer_disk_usage, CimLayerWriter, DestroyReport, ImportOptions,
    ImportSummary,
};
pub use error::{Error, Result};
pub use importlock::interrupted_import;
pub use layout::{cim_path_for_layer, is_cim_layer};
pub use paths::{parse_entry_name, EntryName};
pub use tarstream::{
    decompressed, decompressed_archive, detect_compression, write_layer_from_tar, Compression,
    Progress, TarStats,
};
pub use writer::{LayerWriter, RecordedOp, RecordingLayerWriter};
