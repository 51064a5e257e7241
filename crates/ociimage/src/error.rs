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
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The member being read, empty when the source itself failed.
        member: String,
        /// The underlying I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The path is neither an OCI image layout nor a docker-save archive.
    #[error("{0}: not an OCI image layout (no oci-layout + index.json) nor a docker-save archive (no manifest.json)")]
    UnknownFormat(PathBuf),
    /// A member named by the image (blob, manifest) is not present.
    #[error("{source_path}{}: not found in the image", member_suffix(member))]
    MissingMember {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The member that is absent, e.g. `blobs/sha256/…`.
        member: String,
    },
    /// A JSON document does not parse or lacks a required field.
    #[error("{source_path}{}: invalid JSON: {message}", member_suffix(member))]
    Json {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The JSON document.
        member: String,
        /// The JSON parser's complaint.
        message: String,
    },
    /// A document is structurally valid JSON but not what the format requires.
    #[error("{source_path}{}: {message}", member_suffix(member))]
    Invalid {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The member at fault, empty when the fault is the source's own.
        member: String,
        /// What is wrong.
        message: String,
    },
    /// A digest string is malformed or uses an unsupported algorithm.
    #[error(
        "{source_path}{}: bad digest {}: {message}",
        member_suffix(member),
        quote(digest)
    )]
    BadDigest {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The document the digest is written in.
        member: String,
        /// The digest as written.
        digest: String,
        /// Why it is refused.
        message: String,
    },
    /// The bytes of a blob do not hash to the digest that names them.
    #[error(
        "{source_path}{}: digest mismatch: expected {expected}, got {actual} after {bytes} bytes",
        member_suffix(member)
    )]
    DigestMismatch {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The blob's member.
        member: String,
        /// The digest that names the blob.
        expected: String,
        /// The digest of the bytes read.
        actual: String,
        /// Number of bytes read.
        bytes: u64,
    },
    /// The blob is shorter or longer than its descriptor says.
    #[error(
        "{source_path}{}: size mismatch: descriptor says {expected} bytes, blob has {actual}",
        member_suffix(member)
    )]
    SizeMismatch {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The blob's member.
        member: String,
        /// The size the descriptor states.
        expected: u64,
        /// The blob's size as read (for a blob that is too long, as far as reading got).
        actual: u64,
    },
    /// No manifest in the index matches the wanted platform.
    #[error("{source_path}: no manifest for {wanted}; available: {available}")]
    NoMatchingManifest {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The platform asked for (and the digest that narrowed the choice, if any).
        wanted: String,
        /// The manifests the image has, by platform, comma-separated, or "none".
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
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The platform asked for (and the digest that narrowed the choice, if any).
        wanted: String,
        /// One entry per distinct digest, in index order.
        candidates: Vec<ManifestCandidate>,
    },
    /// A digest prefix names more than one manifest.
    #[error("{source_path}: {prefix} names {} manifests: {}; give more hex digits{}", candidates.len(), list(candidates), which_present(candidates))]
    AmbiguousDigestPrefix {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The digest prefix asked for.
        prefix: String,
        /// The manifests it names, one per distinct digest.
        candidates: Vec<ManifestCandidate>,
    },
    /// No manifest has the digest asked for.
    #[error("{source_path}: no manifest with digest {wanted}; available: {available}")]
    NoSuchManifest {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The digest (or prefix) asked for.
        wanted: String,
        /// The manifests the image has, comma-separated, or "none".
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
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// An image index rather than a manifest.
        index: bool,
        /// Digest of the absent blob.
        digest: String,
        /// What its index entry declares, when it does.
        platform: Option<String>,
        /// `index.json`, or the image index that lists it.
        listed_in: String,
    },
    /// The manifest asked for by digest is for another platform than the one wanted.
    #[error("{source_path}: manifest {digest} is for {platform}, not {wanted}")]
    ManifestNotForPlatform {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// Digest of the manifest asked for.
        digest: String,
        /// The manifest's platform.
        platform: String,
        /// The platform asked for.
        wanted: String,
    },
    /// The index entry and the image config disagree on the platform (a mislabeled image).
    #[error("{source_path}: manifest {manifest}: the index says {declared} but its config says {config}")]
    PlatformMismatch {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// Digest of the manifest.
        manifest: String,
        /// The platform its index entry declares.
        declared: String,
        /// The platform its config states.
        config: String,
    },
    /// The config's `rootfs.diff_ids` and the manifest's layers do not pair up one to one.
    #[error(
        "{source_path}{}: the config lists {diff_ids} diff_ids but the image has {layers} layers",
        member_suffix(member)
    )]
    DiffIdCount {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The config document.
        member: String,
        /// Number of layers in the manifest.
        layers: usize,
        /// Number of `rootfs.diff_ids` in the config.
        diff_ids: usize,
    },
    /// A platform string that does not parse.
    #[error("bad platform {}: {message}", quote(input))]
    BadPlatform {
        /// The platform string as given.
        input: String,
        /// What is wrong with it.
        message: String,
    },
    /// A manifest digest (or digest prefix) that does not parse.
    #[error("bad manifest digest {}: {message}", quote(input))]
    BadDigestPrefix {
        /// The digest string as given.
        input: String,
        /// What is wrong with it.
        message: String,
    },
    /// A layer media type this crate does not know how to read.
    #[error("{source_path}: layer {} ({digest}): unsupported media type {}", index + 1, quote(media_type))]
    UnsupportedMediaType {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// 0-based position in the manifest (messages count layers from 1, as cimkit does).
        index: usize,
        /// Digest of the layer blob.
        digest: String,
        /// The media type the manifest gives the layer.
        media_type: String,
    },
    /// A foreign (non-distributable) layer whose blob is not in the layout.
    #[error("{source_path}: layer {} ({digest}) is a foreign layer not included in the image; fetch it from {urls}", index + 1)]
    ForeignLayerMissing {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// 0-based position in the manifest (messages count layers from 1, as cimkit does).
        index: usize,
        /// Digest of the layer blob.
        digest: String,
        /// Where the layer can be fetched from, comma-separated, or "(no urls given)".
        urls: String,
    },
    /// A document is larger than any sane manifest or config.
    #[error(
        "{source_path}: {member}: {size} bytes is too large for a JSON document (limit {limit})"
    )]
    TooLarge {
        /// The image source (folder or archive).
        source_path: PathBuf,
        /// The document.
        member: String,
        /// Its size in bytes.
        size: u64,
        /// The largest size read, in bytes.
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

/// What tells the candidates apart: their variants and os.versions when those differ, and
/// always the digest.
fn how_to_choose(candidates: &[ManifestCandidate]) -> String {
    let differ = |field: fn(&ManifestCandidate) -> Option<&str>| {
        let first = candidates.first().map(field);
        !candidates.iter().all(|c| Some(field(c)) == first)
    };
    let mut ways: Vec<&str> = Vec::new();
    if differ(|c| c.platform.effective_variant()) {
        ways.push("variant");
    }
    if differ(|c| c.platform.os_version.as_deref()) {
        ways.push("os.version");
    }
    ways.push("digest");
    ways.join(" or by ")
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

pub(crate) use upcase::quote;
