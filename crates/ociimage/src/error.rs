//! The errors of reading an image source: each names the source on disk and the member inside it.

use std::path::PathBuf;

use crate::ManifestCandidate;

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
    /// Several different manifests match the wanted platform: which one is meant is not known.
    #[error(
        "{source_path}: {} manifests match {wanted}: {}; choose one by {}{}",
        candidates.len(),
        list(candidates),
        how_to_choose(candidates),
        which_present(candidates)
    )]
    AmbiguousManifest {
        source_path: PathBuf,
        wanted: String,
        /// One entry per distinct digest, in index order.
        candidates: Vec<ManifestCandidate>,
    },
    /// A digest prefix names more than one manifest.
    #[error("{source_path}: {prefix} names {} manifests: {}; give more hex digits{}", candidates.len(), list(candidates), which_present(candidates))]
    AmbiguousDigestPrefix {
        source_path: PathBuf,
        prefix: String,
        candidates: Vec<ManifestCandidate>,
    },
    /// No manifest has the digest asked for.
    #[error("{source_path}: no manifest with digest {wanted}; available: {available}")]
    NoSuchManifest {
        source_path: PathBuf,
        wanted: String,
        available: String,
    },
    /// The chosen manifest (or image index) is listed, but its blob is not in the image source
    /// (exports of a multi-platform image often hold one platform's blobs only).
    #[error(
        "{source_path}: the {} is listed in {listed_in} but its blob is not in the archive \
         (exported for one platform only?)",
        absent_what(*index, platform.as_deref(), digest)
    )]
    ManifestNotInArchive {
        source_path: PathBuf,
        /// An image index rather than a manifest.
        index: bool,
        digest: String,
        /// What its index entry declares, when it does.
        platform: Option<String>,
        /// `index.json`, or the image index that lists it.
        listed_in: String,
    },
    /// The manifest asked for by digest is for another platform than the one wanted.
    #[error("{source_path}: manifest {digest} is for {platform}, not {wanted}")]
    ManifestNotForPlatform {
        source_path: PathBuf,
        digest: String,
        platform: String,
        wanted: String,
    },
    /// The index entry and the image config disagree on the platform (a mislabeled image).
    #[error("{source_path}: manifest {manifest}: the index says {declared} but its config says {config}")]
    PlatformMismatch {
        source_path: PathBuf,
        manifest: String,
        declared: String,
        config: String,
    },
    /// The config's `rootfs.diff_ids` and the manifest's layers do not pair up one to one.
    #[error(
        "{source_path}{}: the config lists {diff_ids} diff_ids but the image has {layers} layers",
        member_suffix(member)
    )]
    DiffIdCount {
        source_path: PathBuf,
        /// The config document.
        member: String,
        layers: usize,
        diff_ids: usize,
    },
    /// A platform string that does not parse.
    #[error("bad platform {input:?}: {message}")]
    BadPlatform { input: String, message: String },
    /// A manifest digest (or digest prefix) that does not parse.
    #[error("bad manifest digest {input:?}: {message}")]
    BadDigestPrefix { input: String, message: String },
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

/// The candidates of an ambiguous choice, comma-separated.
fn list(candidates: &[ManifestCandidate]) -> String {
    candidates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Both ways to choose, or only the digest when the candidates all state the same os.version.
fn how_to_choose(candidates: &[ManifestCandidate]) -> &'static str {
    let first = candidates.first().map(|c| &c.platform.os_version);
    if candidates
        .iter()
        .all(|c| Some(&c.platform.os_version) == first)
    {
        "digest"
    } else {
        "os.version or by digest"
    }
}

/// When some candidates' blobs are absent, which ones can be read.
fn which_present(candidates: &[ManifestCandidate]) -> String {
    if candidates.iter().all(|c| c.present) {
        return String::new();
    }
    let present: Vec<String> = candidates
        .iter()
        .filter(|c| c.present)
        .map(|c| c.digest.short())
        .collect();
    match present.as_slice() {
        [] => " (none of them is in the archive)".into(),
        [one] => format!(" (only {one} is in the archive)"),
        many => format!(" (only {} are in the archive)", many.join(", ")),
    }
}

/// "manifest for windows/amd64 (sha256:…)", or without the platform when none is declared.
fn absent_what(index: bool, platform: Option<&str>, digest: &str) -> String {
    let kind = if index { "image index" } else { "manifest" };
    match platform {
        Some(p) => format!("{kind} for {p} ({digest})"),
        None => format!("{kind} {digest}"),
    }
}

/// `": member"`, or nothing for an error about the source itself.
fn member_suffix(member: &str) -> String {
    if member.is_empty() {
        String::new()
    } else {
        format!(": {member}")
    }
}
