//! The error type of the cimfs crate: every failure names the image, the file on disk,
//! the object inside the image and the offset where there is one.

use std::path::PathBuf;

/// Errors returned by the writer, the reader and `image_files`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a file of the image.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file the I/O failed on.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A region file the image (or one of its parents) names is not in the image's folder.
    #[error("{}: region file {} is missing (the image or one of its parents needs it)", image.display(), file.display())]
    MissingRegion {
        /// The `.cim` file being opened.
        image: PathBuf,
        /// Where the missing region file was expected.
        file: PathBuf,
    },

    /// A path does not exist in the image.
    #[error("{}: {}: not found", image.display(), upcase::shown(path))]
    NotFound {
        /// The `.cim` file of the image.
        image: PathBuf,
        /// The path inside the image.
        path: String,
    },

    /// A path component that must be a directory is not one.
    #[error("{}: {}: not a directory", image.display(), upcase::shown(path))]
    NotADirectory {
        /// The `.cim` file of the image.
        image: PathBuf,
        /// The path inside the image that names something other than a directory.
        path: String,
    },

    /// A data operation was asked of a directory.
    #[error("{}: {}: is a directory", image.display(), upcase::shown(path))]
    IsADirectory {
        /// The `.cim` file of the image.
        image: PathBuf,
        /// The path of the directory inside the image.
        path: String,
    },

    /// The caller asked for something invalid (bad name, write past the declared size, …).
    #[error("{}: {}: {reason}", image.display(), upcase::shown(path))]
    InvalidArgument {
        /// The `.cim` file of the image.
        image: PathBuf,
        /// The path inside the image the request was about.
        path: String,
        /// What is wrong with the request.
        reason: String,
    },

    /// An image file already exists where a new one is to be created.
    #[error("{}: already exists", file.display())]
    AlreadyExists {
        /// The file that is already there.
        file: PathBuf,
    },

    /// The image is damaged or hostile: `file` is the file on disk holding the bad bytes,
    /// `object` the thing being read (e.g. "file 12", "directory \\Files"), `offset` its byte offset in `file`.
    #[error("{}: corrupt {object} in {} at offset {offset:#x}: {reason}", image.display(), file.display())]
    Corrupt {
        /// The `.cim` file of the image.
        image: PathBuf,
        /// The file on disk holding the bad bytes.
        file: PathBuf,
        /// What was being read, e.g. "file 12".
        object: String,
        /// Byte offset of that object in `file`.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            file: file.into(),
            source,
        }
    }
}
