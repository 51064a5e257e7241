//! The error type of the bcd crate; variants name the object and element involved.

use uuid::Uuid;

/// Errors from reading or editing a BCD store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hive has no `Objects` key, so it is not a BCD store.
    #[error("not a BCD store: {0}")]
    NotAStore(String),
    /// `{default}` could not be resolved through `{bootmgr}`'s element 23000003.
    #[error("cannot resolve {{default}}: {0}")]
    NoDefault(String),
    /// An object that must exist does not.
    #[error("object {{{0}}} does not exist in the store")]
    NoSuchObject(Uuid),
    /// `bcdedit /create` refuses an identifier that is already used.
    #[error("object {{{0}}} already exists in the store")]
    ObjectExists(Uuid),
    /// A caller-supplied argument is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Reading or writing the hive failed.
    #[error(transparent)]
    Hive(#[from] regf::Error),
    /// The store file was not closed cleanly; its logs would have to be replayed first.
    #[error("{path}: {notes}; refusing to edit without replaying BCD.LOG1/LOG2", path = .path.display())]
    Dirty {
        /// The store file.
        path: std::path::PathBuf,
        /// What the hive reader noted about it being dirty.
        notes: String,
    },
    /// Replacing the store file failed.
    #[error("{path}: {source}", path = .path.display())]
    File {
        /// The store file.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Writing the text listing failed.
    #[error("writing the listing: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the crate's error.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) use upcase::quote;
