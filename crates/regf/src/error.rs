//! The one error type of the crate: what went wrong, where in the file, and in which key.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, writing or merging a hive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a hive file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error while handling the hive file at `path`.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// The 4096-byte base block is not that of a primary hive file we can read.
    #[error("bad base block: {0}")]
    BaseBlock(String),
    /// A cell is out of bounds, has the wrong signature or inconsistent contents.
    /// `offset` is relative to the start of the hive bins data (file offset - 4096).
    #[error("bad {what} cell at offset {offset:#x} (key \"{key}\"): {reason}")]
    Corrupt {
        offset: u32,
        what: &'static str,
        key: String,
        reason: String,
    },
    /// A key node is reachable twice from the root (a cycle or a shared subtree); `key` is the
    /// key whose subkey list reaches it the second time.
    #[error(
        "key node at offset {offset:#x} (listed by key \"{key}\") is reachable twice: cycle in the key graph"
    )]
    Cycle { offset: u32, key: String },
    /// The key tree is deeper than Windows allows (512 levels).
    #[error("key \"{key}\" is nested deeper than {limit} levels")]
    TooDeep { key: String, limit: usize },
    /// The hive asks for more memory than its size can justify (hostile sizes or shared cells).
    #[error("key \"{key}\": hive contents exceed the allocation budget of {budget} bytes")]
    Budget { key: String, budget: u64 },
    /// The in-memory tree cannot be written as a hive (bad name, duplicates, sizes).
    #[error("cannot write key \"{key}\": {reason}")]
    Invalid { key: String, reason: String },
}
