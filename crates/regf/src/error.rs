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
        /// The file being read or written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An error while handling the hive file at `path`.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The hive (or log) file.
        path: PathBuf,
        /// What went wrong with it.
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
        /// Offset of the bad cell, relative to the start of the hive bins data.
        offset: u32,
        /// What kind of cell was expected, e.g. "key node" or "value list".
        what: &'static str,
        /// Path of the key being read (with `\value` appended when a value was).
        key: String,
        /// What is wrong with the cell.
        reason: String,
    },
    /// A key node is reachable twice from the root (a cycle or a shared subtree); `key` is the
    /// key whose subkey list reaches it the second time.
    #[error(
        "key node at offset {offset:#x} (listed by key \"{key}\") is reachable twice: cycle in the key graph"
    )]
    Cycle {
        /// Offset of the key node reached twice, relative to the hive bins data.
        offset: u32,
        /// Path of the key whose subkey list reaches it the second time.
        key: String,
    },
    /// The key tree is deeper than Windows allows (512 levels).
    #[error("key \"{key}\" is nested deeper than {limit} levels")]
    TooDeep {
        /// Path of the key that lies too deep.
        key: String,
        /// The depth limit, in levels.
        limit: usize,
    },
    /// The hive asks for more memory than its size can justify (hostile sizes or shared cells).
    #[error("key \"{key}\": hive contents exceed the allocation budget of {budget} bytes")]
    Budget {
        /// Path of the key being read when the budget ran out.
        key: String,
        /// The allocation budget, in bytes.
        budget: u64,
    },
    /// The in-memory tree cannot be written as a hive (bad name, duplicates, sizes).
    #[error("cannot write key \"{key}\": {reason}")]
    Invalid {
        /// Path of the key that cannot be written (or the name of the oversized part).
        key: String,
        /// Why it cannot be written.
        reason: String,
    },
}

pub(crate) use upcase::quote;
