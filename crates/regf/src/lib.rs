//! Windows registry hive files (regf): parse, edit, write, merge differencing hives.
//!
//! [`Hive::parse`] reads any primary hive (format 1.3-1.6) into an in-memory tree of
//! [`Key`]s and [`Value`]s; [`Hive::to_bytes`] writes a fresh compact hive the way
//! ORSaveHive does; [`merge`] flattens a container-layer delta onto its base like
//! ORMergeHives; [`dump`] renders a tree as text; [`recover`] replays the transaction logs
//! of a dirty hive.

#![warn(missing_docs)]

mod dump;
mod error;
pub mod format;
mod log;
mod merge;
mod model;
mod parse;
pub mod validate;
mod write;

pub use dump::{dump, dump_from, export_reg, filetime_to_string};
pub use error::{Error, Result};
pub use log::{log_paths, recover, recover_file, FileRecovery, LogFormat, LogReport, Recovery};
pub use merge::{merge, merge_all};
pub use model::*;
