//! The error type of the vhdx crate: every variant names the file and, where there is one,
//! the offset or structure involved.

use std::path::PathBuf;

/// Errors from creating, reading, partitioning or formatting VHDX files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("{path}: {op} at offset {offset:#x}: {source}", path = .path.display())]
    Io {
        /// The file the call was made on.
        path: PathBuf,
        /// What was being done, e.g. "write" or "set length".
        op: &'static str,
        /// File offset of the operation (0 when it has none).
        offset: u64,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A structure read from the file is invalid.
    #[error("{path}: bad {what} at offset {offset:#x}: {reason}", path = .path.display())]
    Corrupt {
        /// The VHDX file.
        path: PathBuf,
        /// Which structure, e.g. "headers" or "BAT entry".
        what: &'static str,
        /// File offset of that structure.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The log must be replayed but cannot be (MS-VHDX 2.3); the reason names the problem.
    #[error("{path}: log at offset {offset:#x}: {reason}", path = .path.display())]
    Log {
        /// The VHDX file.
        path: PathBuf,
        /// File offset of the log region or of the log entry at fault.
        offset: u64,
        /// Why the log cannot be replayed.
        reason: String,
    },
    /// The file is valid but uses something this implementation does not handle.
    #[error("{path}: unsupported: {reason}", path = .path.display())]
    Unsupported {
        /// The VHDX file.
        path: PathBuf,
        /// What is not handled.
        reason: String,
    },
    /// A caller-supplied argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A read or write past the end of the virtual disk.
    #[error("{path}: range {offset:#x}+{len:#x} lies beyond the virtual disk size {size:#x}", path = .path.display())]
    OutOfRange {
        /// The VHDX file.
        path: PathBuf,
        /// Virtual disk offset the access starts at.
        offset: u64,
        /// Length of the access in bytes.
        len: u64,
        /// Size of the virtual disk in bytes.
        size: u64,
    },
    /// The parent of a differencing disk could not be found.
    #[error("{path}: parent not found (tried {})", tried.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", "), path = .path.display())]
    ParentNotFound {
        /// The differencing disk.
        path: PathBuf,
        /// The paths tried, from the parent locator's entries, in the order tried.
        tried: Vec<String>,
    },
    /// The parent's DataWriteGuid does not match the child's parent_linkage (MS-VHDX 2.6.2.6.3).
    #[error("{path}: parent {parent} has DataWriteGuid {found}, child expects parent_linkage {expected}", path = .path.display(), parent = .parent.display())]
    ParentMismatch {
        /// The differencing disk.
        path: PathBuf,
        /// The parent file found through the locator.
        parent: PathBuf,
        /// The child's `parent_linkage` text ("(none)" when it has none).
        expected: String,
        /// The parent's current DataWriteGuid, braced upper-case text.
        found: String,
    },
    /// The parent describes another disk than the child: a different virtual size or logical
    /// sector size, so the child cannot read through to it.
    #[error("{path}: parent {parent} does not match: {reason}", path = .path.display(), parent = .parent.display())]
    ParentIncompatible {
        /// The differencing disk.
        path: PathBuf,
        /// The parent file found through the locator.
        parent: PathBuf,
        /// What differs, e.g. "its virtual size is 1073741824 bytes, the child's 2147483648".
        reason: String,
    },
    /// The virtual disk's partition table is not what a scratch VHD has.
    #[error("{path}: partition table: {reason}", path = .path.display())]
    Partition {
        /// The VHDX file.
        path: PathBuf,
        /// What is wrong with the partition table.
        reason: String,
    },
    /// An external formatting tool is not installed.
    #[error(
        "{tool} not found in PATH, /usr/sbin or /sbin: install the Debian package `{package}`"
    )]
    ToolMissing {
        /// The program looked for, e.g. "mkntfs".
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// An external tool ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// The program that failed.
        tool: &'static str,
        /// Its exit status, as text.
        status: String,
        /// What it wrote to standard error, trimmed.
        stderr: String,
    },
    /// One step of the utility-VM disk preparation failed; both disks were removed.
    #[error("utility VM disk step {step} failed: {source}")]
    UtilityVm {
        /// The step that failed.
        step: crate::uvm::UvmStep,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// Result with the crate's error.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) use upcase::quote;

/// `n` and the noun for it, singular for 1 (`count(1, "entry", "entries")` is "1 entry").
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}
