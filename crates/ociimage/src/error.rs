//! The errors of reading an image source: each names the source on disk and the member inside it.

use std::path::PathBuf;

/// Result of an image-source operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong reading an OCI layout or a docker-save archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file on disk (or a member of the archive) failed.
    #[error("{}{}: {error}", source_path.display(), member_suffix(member))]
    Io {
        source_path: PathBuf,
        member: String,
        #[source]
        error: std::io::Error,
    },
    /// The path is neither an OCI image layout nor a docker-save archive.
    #[error("{0}: not an OCI image layout (no oci-layout + index.json) nor a docker-save archive (no manifest.json)")]
    UnknownFormat(PathBuf),
    /// A member named by the image (blob, manifest) is not present.
    #[error("{source_path}{}: not found in the image", member_suffix(member))]
    MissingMember {
        source_path: PathBuf,
        member: String,
    },
    /// A JSON document does not parse or lacks a required field.
    #[error("{source_path}{}: invalid JSON: {message}", member_suffix(member))]
    Json {
        source_path: PathBuf,
        member: String,
        message: String,
    },
    /// A document is structurally valid JSON but not what the format requires.
    #[error("{source_path}{}: {message}", member_suffix(member))]
    Invalid {
        source_path: PathBuf,
        member: String,
        message: String,
    },
    /// A digest string is malformed or uses an unsupported algorithm.
    #[error(
        "{source_path}{}: bad digest {digest:?}: {message}",
        member_suffix(member)
    )]
    BadDigest {
        source_path: PathBuf,
        member: String,
        digest: String,
        message: String,
    },
    /// The bytes of a blob do not hash to the digest that names them.
    #[error(
        "{source_path}{}: digest mismatch: expected {expected}, got {actual} after {bytes} bytes",
        member_suffix(member)
    )]
    DigestMismatch {
        source_path: PathBuf,
        member: String,
        expected: String,
        actual: String,
        bytes: u64,
    },
    /// The blob is shorter or longer than its descriptor says.
    #[error(
        "{source_path}{}: size mismatch: descriptor says {expected} bytes, blob has {actual}",
        member_suffix(member)
    )]
    SizeMismatch {
        source_path: PathBuf,
        member: String,
        expected: u64,
        actual: u64,
    },
    /// No manifest in the index matches the wanted platform.
    #[error("{source_path}: no manifest for {wanted}; available: {available}")]
    NoMatchingManifest {
        source_path: PathBuf,
        wanted: String,
        available: String,
    },
    /// A layer media type this crate does not know how to read.
    #[error("{source_path}: layer {} ({digest}): unsupported media type {media_type:?}", index + 1)]
    UnsupportedMediaType {
        source_path: PathBuf,
        /// 0-based position in the manifest (messages count layers from 1, as cimkit does).
        index: usize,
        digest: String,
        media_type: String,
    },
    /// A foreign (non-distributable) layer whose blob is not in the layout.
    #[error("{source_path}: layer {} ({digest}) is a foreign layer not included in the image; fetch it from {urls}", index + 1)]
    ForeignLayerMissing {
        source_path: PathBuf,
        /// 0-based position in the manifest (messages count layers from 1, as cimkit does).
        index: usize,
        digest: String,
        urls: String,
    },
    /// A document is larger than any sane manifest or config.
    #[error(
        "{source_path}: {member}: {size} bytes is too large for a JSON document (limit {limit})"
    )]
    TooLarge {
        source_path: PathBuf,
        member: String,
        size: u64,
        limit: u64,
    },
}

/// `": member"`, or nothing for an error about the source itself.
fn member_suffix(member: &str) -> String {
    if member.is_empty() {
        String::new()
    } else {
        format!(": {member}")
    }
}
