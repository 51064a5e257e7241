//! The crate's error type: every variant names the layer file, tar entry or image path involved.

use std::io;
use std::path::{Path, PathBuf};

use crate::backuptar::DialectError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a layer could not be imported or processed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tar stream itself cannot be read (not a tar, a damaged header, a truncated archive).
    #[error("{}", tar_read_message(*entries, *offset, error))]
    TarRead {
        /// Tar entries imported before the failure.
        entries: u64,
        /// How many bytes of the input (as given: compressed or not) had been read.
        offset: Option<u64>,
        /// The tar reader's error, quoted in the message (not a separate cause).
        error: io::Error,
    },
    /// The layer input itself failed (a read error, a blob whose digest or size is wrong), not
    /// the tar or its compression.
    #[error(
        "reading the layer input failed (input read up to byte {offset}, {} imported by then): {}",
        count(*entries, "tar entry", "tar entries"),
        complaint(error)
    )]
    Input {
        /// Tar entries imported when the failure was seen (with a compressed input the import
        /// runs behind the reading, so the failure may lie further on).
        entries: u64,
        /// How many bytes of the input (as given: compressed or not) had been read.
        offset: u64,
        /// The input's error, quoted in the message (not a separate cause).
        error: io::Error,
    },
    /// The gzip or zstd stream around the tar is damaged: the decompressor's complaint.
    #[error("{}", decompress_message(compression, *decompressed, *offset, error))]
    Decompress {
        /// "gzip" or "zstd".
        compression: &'static str,
        /// Bytes of tar the decompressor had produced before it failed.
        decompressed: u64,
        /// How many bytes of the compressed input had been read.
        offset: u64,
        /// The decompressor's error, quoted in the message (not a separate cause).
        error: io::Error,
    },
    /// The layer is compressed with something other than gzip or zstd; the field names it
    /// ("xz", "bzip2").
    #[error("layer tar compression {0} is not supported (gzip, zstd or plain tar)")]
    UnsupportedCompression(&'static str),
    /// A tar entry's Windows metadata (PAX records, times, EAs, reparse data) is malformed.
    #[error("tar entry {}: {source}", quoted(entry))]
    Dialect {
        /// The tar entry's name.
        entry: String,
        /// What is malformed.
        source: DialectError,
    },
    /// A tar entry cannot be imported (bad name, unsupported type, misplaced stream, ...).
    #[error("tar entry {}: {reason}", quoted(entry))]
    BadEntry {
        /// The tar entry's name.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// Reading a tar entry's data failed.
    #[error("reading data of tar entry {}: {source}", quoted(entry))]
    TarData {
        /// The tar entry's name.
        entry: String,
        /// The read error.
        source: io::Error,
    },
    /// An I/O call on a host file or folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The host path.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The layer folder or its parents are not as layer processing needs them.
    #[error("layer {}: {reason}", layer.display())]
    Layer {
        /// The layer folder.
        layer: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An operation on a CIM image failed.
    #[error("{}", cim_message(image, op, path, source))]
    Cim {
        /// The `.cim` file.
        image: PathBuf,
        /// The operation, e.g. "add", "link" or "commit".
        op: &'static str,
        /// The path inside the image, empty when the operation has none.
        path: String,
        /// The CIM library's error.
        source: Box<cimfs::Error>,
    },
    /// Reading, merging or writing a registry hive failed.
    #[error("hive {}: {source}", path.display())]
    Hive {
        /// The hive file (for a merge, the delta hive).
        path: PathBuf,
        /// The registry library's error.
        source: Box<regf::Error>,
    },
    /// A hive the import must rewrite (merge or edit) is dirty: its transaction logs held changes
    /// the file lacks, which a rewritten, clean hive would lose.
    #[error(
        "hive {} is dirty ({detail}): its newest changes were in transaction logs (.LOG1/.LOG2), \
         which a merged or edited copy cannot include; the layer that carries this hive must \
         carry it saved clean",
        path.display()
    )]
    DirtyHive {
        /// The hive file.
        path: PathBuf,
        /// What the reader noticed (sequence numbers, checksum).
        detail: String,
    },
    /// A step of utility VM processing (build number, VHDX disks, BCD or SYSTEM edits) failed.
    #[error("utility VM processing of {}: {step}: {reason}", layer.display())]
    UtilityVm {
        /// The layer folder.
        layer: PathBuf,
        /// The step, e.g. "edit BCD".
        step: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A layer writer was called out of order (e.g. a write with no open stream, or after close).
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

/// Names longer than this many characters are shortened in messages.
const SHORT_NAME_CHARS: usize = 160;
/// Characters kept from each end of a shortened name.
const SHORT_NAME_KEEP: usize = 60;

/// `s` for an error message: whole when short, else its start and end with its length between,
/// so that a hostile 40,000-character name or link target does not fill the terminal.
pub(crate) fn shorten(s: &str) -> String {
    let n = s.chars().count();
    if n <= SHORT_NAME_CHARS {
        return s.to_string();
    }
    let head: String = s.chars().take(SHORT_NAME_KEEP).collect();
    let tail: String = s.chars().skip(n - SHORT_NAME_KEEP).collect();
    format!("{head}…[{n} characters]…{tail}")
}

/// `n` and the noun for it, singular for 1 (`count(1, "file", "files")` is "1 file").
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// [`shorten`], in double quotes (see [`quote`]).
pub(crate) fn quoted(s: &str) -> String {
    quote(&shorten(s))
}

pub(crate) use upcase::quote;

/// A library's complaint, with control characters and binary junk it quotes escaped (but not
/// quotes or apostrophes) and cut short.
fn complaint(source: &io::Error) -> String {
    let mut why = String::new();
    for c in source.to_string().chars() {
        if c.is_control() {
            why.extend(c.escape_debug());
        } else {
            why.push(c);
        }
    }
    if why.chars().count() > SHORT_NAME_CHARS {
        why = why.chars().take(SHORT_NAME_CHARS).collect::<String>() + "…";
    }
    why
}

/// A decompression failure: which decompressor, how far it got (in tar bytes out and
/// compressed bytes in), and what it said.
fn decompress_message(
    compression: &str,
    decompressed: u64,
    offset: u64,
    source: &io::Error,
) -> String {
    let mut why = complaint(source);
    if source.kind() == io::ErrorKind::UnexpectedEof {
        why.push_str(&format!(" (the {compression} stream is truncated)"));
    }
    format!(
        "{compression} decompression failed after {} of tar had come out \
         (compressed input read up to byte {offset}): {why}",
        count(decompressed, "byte", "bytes")
    )
}

/// A CIM operation's failure, naming the image and path once: the CIM library's message repeats
/// them, so its copy of the image is dropped and its copies of the path shortened.
fn cim_message(image: &Path, op: &str, path: &str, source: &cimfs::Error) -> String {
    let image_prefix = format!("{}: ", image.display());
    let full = source.to_string();
    let mut rest = full
        .strip_prefix(&image_prefix)
        .unwrap_or(&full)
        .to_string();
    if !path.is_empty() {
        if let Some(r) = rest.strip_prefix(&format!("{path}: ")) {
            rest = r.to_string();
        } else if path.chars().count() > SHORT_NAME_CHARS {
            rest = rest.replace(path, &shorten(path));
        }
    }
    let image = image.display();
    if path.is_empty() {
        format!("CIM {image}: {op}: {rest}")
    } else {
        format!("CIM {image}: {op} {}: {rest}", quoted(path))
    }
}

/// What went wrong reading the tar: how far it got, and the reader's complaint with any binary
/// junk it quotes escaped and cut short.
fn tar_read_message(entries: u64, offset: Option<u64>, source: &io::Error) -> String {
    let near = offset.map_or_else(String::new, |o| format!(" (input read up to byte {o})"));
    let why = complaint(source);
    if entries == 0 {
        format!("the input is not a readable tar archive{near}: {why}")
    } else {
        format!(
            "reading the layer tar after {}{near}: {why}",
            count(entries, "entry", "entries")
        )
    }
}
