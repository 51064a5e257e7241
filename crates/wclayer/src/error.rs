//! The crate's error type: every variant names the layer file, tar entry or image path involved.

use std::io;
use std::path::PathBuf;

use crate::backuptar::DialectError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a layer could not be imported or processed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", tar_read_message(*entries, *offset, error))]
    TarRead {
        entries: u64,
        /// How many bytes of the input (as given: compressed or not) had been read.
        offset: Option<u64>,
        /// The tar reader's error, quoted in the message (not a separate cause).
        error: io::Error,
    },
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

/// What went wrong reading the tar: how far it got, and the reader's complaint with any binary
/// junk it quotes escaped and cut short.
fn tar_read_message(entries: u64, offset: Option<u64>, source: &io::Error) -> String {
    let near = offset.map_or_else(String::new, |o| format!(" (input read up to byte {o})"));
    let mut why: String = source.to_string().escape_debug().collect();
    if why.chars().count() > 160 {
        why = why.chars().take(160).collect::<String>() + "…";
    }
    if entries == 0 {
        format!("the input is not a readable tar archive{near}: {why}")
    } else {
        format!("reading the layer tar after {entries} entries{near}: {why}")
    }
}
