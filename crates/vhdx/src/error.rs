//! The error type of the vhdx crate: every variant names the file and, where there is one,
//! the offset or structure involved.

use std::path::PathBuf;

/// Errors from creating, reading, partitioning or formatting VHDX files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("{path}: {op} at offset {offset:#x}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        offset: u64,
        source: std::io::Error,
    },
    /// A structure read from the file is invalid.
    #[error("{path}: bad {what} at offset {offset:#x}: {reason}", path = .path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        offset: u64,
        reason: String,
    },
    /// The log must be replayed but cannot be (MS-VHDX 2.3); the reason names the problem.
    #[error("{path}: log at offset {offset:#x}: {reason}", path = .path.display())]
    Log {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The file is valid but uses something this implementation does not handle.
    #[error("{path}: unsupported: {reason}", path = .path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// A caller-supplied argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A read or write past the end of the virtual disk.
    #[error("{path}: range {offset:#x}+{len:#x} lies beyond the virtual disk size {size:#x}", path = .path.display())]
    OutOfRange {
        path: PathBuf,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// The parent of a differencing disk could not be found.
    #[error("{path}: parent not found (tried {tried:?})", path = .path.display())]
    ParentNotFound { path: PathBuf, tried: Vec<String> },
    /// The parent's DataWriteGuid does not match the child's parent_linkage (MS-VHDX 2.6.2.6.3).
    #[error("{path}: parent {parent} has DataWriteGuid {found}, child expects parent_linkage {expected}", path = .path.display(), parent = .parent.display())]
    ParentMismatch {
        path: PathBuf,
        parent: PathBuf,
        expected: String,
        found: String,
    },
    /// The virtual disk's partition table is not what a scratch VHD has.
    #[error("{path}: partition table: {reason}", path = .path.display())]
    Partition { path: PathBuf, reason: String },
    /// An external formatting tool is not installed.
    #[error(
        "{tool} not found in PATH, /usr/sbin or /sbin: install the Debian package `{package}`"
    )]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    /// An external tool ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    /// One step of the utility-VM disk preparation failed; both disks were removed.
    #[error("utility VM disk step {step} failed: {source}")]
    UtilityVm {
        step: crate::uvm::UvmStep,
        #[source]
        source: Box<Error>,
    },
}

/// Result with the crate's error.
pub type Result<T> = std::result::Result<T, Error>;
