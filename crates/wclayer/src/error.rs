//! The crate's error type: every variant names the layer file, tar entry or image path involved.

use std::io;
use std::path::PathBuf;

use crate::backuptar::DialectError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a layer could not be imported or processed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the layer tar after {entries} entries: {source}")]
    TarRead { entries: u64, source: io::Error },
    #[error("layer tar compression {0} is not supported (gzip, zstd or plain tar)")]
    UnsupportedCompression(&'static str),
    #[error("tar entry {entry:?}: {source}")]
    Dialect { entry: String, source: DialectError },
    #[error("tar entry {entry:?}: {reason}")]
    BadEntry { entry: String, reason: String },
    #[error("reading data of tar entry {entry:?}: {source}")]
    TarData { entry: String, source: io::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("layer {}: {reason}", layer.display())]
    Layer { layer: PathBuf, reason: String },
    #[error("CIM {}: {op} {path:?}: {source}", image.display())]
    Cim {
        image: PathBuf,
        op: &'static str,
        path: String,
        source: Box<cimfs::Error>,
    },
    #[error("hive {}: {source}", path.display())]
    Hive {
        path: PathBuf,
        source: Box<regf::Error>,
    },
    #[error("utility VM processing of {}: {step}: {reason}", layer.display())]
    UtilityVm {
        layer: PathBuf,
        step: &'static str,
        reason: String,
    },
    #[error("layer writer: {0}")]
    Sequence(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn entry(entry: &str, reason: impl Into<String>) -> Error {
        Error::BadEntry {
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }
}
