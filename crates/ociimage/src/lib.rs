//! OCI image layouts and docker-save archives: which layers, in which order, and their bytes.
//!
//! An image source is a folder or a tar (plain, gzip or zstd) holding either an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) or what `docker save` writes (`manifest.json`).
//! [`Image::open`] picks the manifest for a platform (following nested indexes; refusing to guess
//! between manifests that differ only by OS version; blobs the index lists may be absent) and
//! lists the layers bottom-up;
//! [`Image::open_layer`] streams one layer blob (still compressed, as stored) and fails at its end
//! when the bytes do not match the digest. Sources: OCI image-spec v1.1 (`image-layout.md`,
//! `image-index.md`, `manifest.md`, `layer.md`, `config.md`), moby `image/tarexport`.

#![warn(missing_docs)]

mod digest;
mod error;
mod store;

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

pub use digest::{Digest, DigestPrefix, VerifyingReader};
pub use error::{Error, Result};
use store::Store;

/// Largest JSON document (index, manifest, config) we read into memory.
const JSON_LIMIT: u64 = 64 << 20;
/// Nested indexes deeper than this are refused (real images nest at most once).
const MAX_INDEX_DEPTH: usize = 8;
/// Most manifests (and absent entries) all of an image's indexes may list together.
const MAX_MANIFESTS: usize = 10_000;

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Which kind of image source was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout (folder or tar).
    OciLayout,
    /// A `docker save` archive (tar or extracted folder).
    DockerSave,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::OciLayout => "OCI image layout",
            Format::DockerSave => "docker save archive",
        })
    }
}

/// How a layer blob is compressed (the layer importer's own notion of it).
pub use wclayer::Compression;

/// Guesses the compression from the first bytes of a blob, as the layer importer does; a
/// compression the importer refuses (xz, bzip2) counts as none here, so that the importer's own
/// message names it when the layer is imported.
fn sniff_compression(head: &[u8]) -> Compression {
    wclayer::detect_compression(head).unwrap_or(Compression::None)
}

/// An operating system, CPU architecture and optionally its variant and the Windows OS
/// version, as in an image index (`windows/amd64`, `windows/amd64:10.0.20348`,
/// `windows/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, e.g. `windows`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// CPU variant, e.g. `v8` for `arm64`; as a wanted platform, `None` accepts any.
    pub variant: Option<String>,
    /// `os.version`: as a wanted platform, `major.minor.build[.revision]`, which matches every
    /// version that starts with those components; as an image's platform, what it declares.
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform Windows container layers are built for.
    pub fn windows_amd64() -> Platform {
        Platform {
            os: "windows".into(),
            architecture: "amd64".into(),
            variant: None,
            os_version: None,
        }
    }

    /// Parses `os/architecture[/variant]`, optionally with an OS version as
    /// `os/architecture[/variant]:version` or as containerd writes it,
    /// `os(version)/architecture[/variant]`. A version has three or four dot-separated numbers
    /// (`10.0.20348`, `10.0.20348.2527`).
    pub fn parse(s: &str) -> Result<Platform> {
        const FORMS: &str = "want os/architecture[/variant], os/architecture[/variant]:version \
             or os(version)/architecture[/variant]";
        let bad = |message: &str| Error::BadPlatform {
            input: s.to_string(),
            message: message.to_string(),
        };
        let (os_part, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("want os/architecture, e.g. windows/amd64"))?;
        let (arch_variant, colon_version) = match rest.split_once(':') {
            Some((arch, version)) => (arch, Some(version)),
            None => (rest, None),
        };
        let (architecture, variant) = match arch_variant.split_once('/') {
            Some((arch, variant)) => (arch, Some(variant)),
            None => (arch_variant, None),
        };
        let (os, paren_version) = match os_part.split_once('(') {
            Some((os, tail)) => {
                let version = tail
                    .strip_suffix(')')
                    .ok_or_else(|| bad("unclosed \"(\" after the os"))?;
                (os, Some(version))
            }
            None => (os_part, None),
        };
        if os.is_empty() || architecture.is_empty() {
            return Err(bad("want os/architecture, e.g. windows/amd64"));
        }
        if let Some((os, version)) = os.split_once(':') {
            return Err(bad(&if os.is_empty() || version.is_empty() {
                FORMS.to_string()
            } else {
                format!(
                    "the OS version goes after the architecture or in parentheses after the \
                     os: {os}/{architecture}:{version} or {os}({version})/{architecture}"
                )
            }));
        }
        if variant.is_some_and(|v| v.is_empty() || v.contains('/')) {
            return Err(bad(
                "want one variant after the architecture, e.g. arm64/v8",
            ));
        }
        if [os, architecture, variant.unwrap_or_default()]
            .iter()
            .any(|p| p.contains(['(', ')']))
        {
            return Err(bad(FORMS));
        }
        let os_version = match (paren_version, colon_version) {
            (Some(_), Some(_)) => return Err(bad("the OS version is given twice")),
            (Some(v), None) | (None, Some(v)) => {
                if !is_wanted_version(v) {
                    return Err(bad(
                        "the OS version wants major.minor.build[.revision], e.g. 10.0.20348",
                    ));
                }
                Some(v.to_string())
            }
            (None, None) => None,
        };
        Ok(Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
            os_version,
        })
    }

    /// Whether an image's platform is the wanted one: os and architecture equal (ignoring ASCII
    /// case); when a variant is wanted, the image's equal to it (an image that states none has
    /// its architecture's usual one: `v8` for arm64, `v7` for arm); and when a version is
    /// wanted, the image's version starts with its components.
    pub fn matches(&self, image: &Platform) -> bool {
        self.os.eq_ignore_ascii_case(&image.os)
            && self.architecture.eq_ignore_ascii_case(&image.architecture)
            && match &self.variant {
                None => true,
                Some(wanted) => image
                    .effective_variant()
                    .is_some_and(|v| v.eq_ignore_ascii_case(wanted)),
            }
            && match &self.os_version {
                None => true,
                Some(wanted) => image
                    .os_version
                    .as_deref()
                    .is_some_and(|v| version_starts_with(v, wanted)),
            }
    }

    /// The variant stated, else the one an image of this architecture has when it states none.
    pub fn effective_variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or_else(|| match self.architecture.to_ascii_lowercase().as_str() {
                "arm64" => Some("v8"),
                "arm" => Some("v7"),
                _ => None,
            })
    }

    /// `os/arch[/variant]` without the version.
    fn os_arch(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.os_arch())?;
        if let Some(v) = &self.os_version {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform> {
        Platform::parse(s)
    }
}

/// Three or four dot-separated decimal numbers: major.minor.build, and maybe the revision.
fn is_wanted_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (3..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether two stated OS versions describe the same OS: one's components are the other's
/// leading ones (`10.0.17763` and `10.0.17763.5576`).
fn versions_agree(a: &str, b: &str) -> bool {
    version_starts_with(a, b) || version_starts_with(b, a)
}

/// The one of two agreeing versions with more components.
fn more_specific(a: String, b: String) -> String {
    if b.split('.').count() > a.split('.').count() {
        b
    } else {
        a
    }
}

/// Whether `version`'s leading dot-separated components equal every component of `wanted`
/// (numbers compare by value, so `10.0.020348` is `10.0.20348`).
fn version_starts_with(version: &str, wanted: &str) -> bool {
    let have: Vec<&str> = version.split('.').collect();
    let want: Vec<&str> = wanted.split('.').collect();
    have.len() >= want.len()
        && have
            .iter()
            .zip(&want)
            .all(|(h, w)| match (h.parse::<u64>(), w.parse::<u64>()) {
                (Ok(h), Ok(w)) => h == w,
                _ => h == w,
            })
}

/// Which manifest of an image source to read: the platform it must be for and, when the
/// platform alone does not tell, its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The platform the manifest must be for.
    pub platform: Platform,
    /// A digest or its first hex digits naming the manifest: in an OCI layout its manifest
    /// digest, its config digest or the digest of an image index it is listed under (below
    /// index.json); in a docker-save archive the image id, i.e. config digest.
    pub digest: Option<DigestPrefix>,
}

impl From<Platform> for Selector {
    fn from(platform: Platform) -> Selector {
        Selector {
            platform,
            digest: None,
        }
    }
}

/// A manifest of an image source that a selection could mean, as listed in errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestCandidate {
    /// Manifest digest (OCI layouts) or image id, i.e. config digest (docker save).
    pub digest: Digest,
    /// As the index states it, or else the config; `os` is empty when neither says.
    pub platform: Platform,
    /// Whether its blob is in the image source: an index may list manifests that were never
    /// pulled or exported, which can be named but not read.
    pub present: bool,
}

impl fmt::Display for ManifestCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.digest.short())?;
        if self.platform.os.is_empty() {
            f.write_str("no platform")?;
        } else {
            match &self.platform.os_version {
                Some(v) => write!(f, "{}, os.version {v}", self.platform.os_arch())?,
                None => write!(f, "{}, no os.version", self.platform.os_arch())?,
            }
        }
        if !self.present {
            f.write_str("; not in the archive")?;
        }
        f.write_str(")")
    }
}

/// One layer of an image, bottom (base) layer first.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Position in the image, 0 = base layer.
    pub index: usize,
    /// Digest of the blob as stored (checked while streaming it).
    pub digest: Digest,
    /// Digest of the uncompressed tar, from the image config, when it says.
    pub diff_id: Option<Digest>,
    /// Media type from the manifest (docker save: `application/vnd.docker.image.rootfs.diff.tar`).
    pub media_type: String,
    /// How the blob is compressed.
    pub compression: Compression,
    /// Size of the blob as stored, when known (docker save: the size of the saved file).
    pub size: Option<u64>,
    /// A foreign / non-distributable layer (Windows base layers are published this way).
    pub foreign: bool,
    /// Where a foreign layer can be fetched from.
    pub urls: Vec<String>,
    /// Whether the blob is present in the image source.
    pub present: bool,
    member: String,
}

/// An image read from an OCI layout or a docker-save archive.
#[derive(Debug)]
pub struct Image {
    store: Store,
    format: Format,
    manifest_digest: Option<Digest>,
    config_digest: Option<Digest>,
    platform: Option<Platform>,
    layers: Vec<Layer>,
    absent_alternatives: Vec<ManifestCandidate>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    platform: Option<DescPlatform>,
    /// Values are strings by the spec; anything else is kept and ignored.
    #[serde(default)]
    annotations: Option<std::collections::HashMap<String, serde_json::Value>>,
}

impl Descriptor {
    /// A buildkit attestation (provenance, SBOM) listed beside the image it describes; never an
    /// image itself, and often not pulled or exported with it.
    fn is_attestation(&self) -> bool {
        self.annotations
            .as_ref()
            .and_then(|a| a.get("vnd.docker.reference.type"))
            .and_then(serde_json::Value::as_str)
            == Some("attestation-manifest")
    }
}

#[derive(Deserialize, Clone)]
struct DescPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(rename = "os.version", default)]
    os_version: Option<String>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// An index served where a manifest was expected carries this instead of layers.
    #[serde(default)]
    manifests: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(rename = "os.version", default)]
    os_version: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

impl Config {
    fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: non_empty(&self.variant),
            os_version: non_empty(&self.os_version),
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
    #[serde(rename = "LayerSources", default)]
    layer_sources: std::collections::HashMap<String, Descriptor>,
}

impl Image {
    /// Opens an image source (folder or tar; OCI layout or docker save) and picks the manifest
    /// for `platform`, as [`Image::open_with`] does without a digest.
    pub fn open(path: &Path, platform: &Platform) -> Result<Image> {
        Image::open_with(path, &Selector::from(platform.clone()))
    }

    /// Opens an image source and picks the manifest `selector` names.
    ///
    /// The candidates are the manifests the index lists (attestation manifests are not images
    /// and are left out), including those whose blobs are not in the source: they count for the
    /// choice, by the platform their index entry declares, and choosing one fails with
    /// [`Error::ManifestNotInArchive`].
    ///
    /// Without a digest: the one manifest for the platform; several different manifests for it
    /// (typically one per Windows version) are refused with [`Error::AmbiguousManifest`]; when no
    /// manifest names any platform at all and there is exactly one, that one is taken. With a
    /// digest (or prefix): in an OCI layout the manifest it names by its own digest or its
    /// config's, or the manifests listed under the image index it names, of which the platform
    /// must then pick one; in a docker-save archive the image whose id (config digest) it is.
    /// A prefix matching several different digests is refused. The manifest must also be for
    /// the platform when it states one.
    ///
    /// The chosen manifest is checked for consistency: the platform its index entry declares
    /// must be the one its config states (an os.version may leave out the revision the other
    /// gives), and the config's `rootfs.diff_ids`, when it lists any, must pair up with the
    /// layers.
    pub fn open_with(path: &Path, selector: &Selector) -> Result<Image> {
        let store = Store::open(path)?;
        if store.exists("oci-layout") && store.exists("index.json") {
            open_oci(store, selector)
        } else if store.exists("manifest.json") {
            open_docker(store, selector)
        } else {
            Err(Error::UnknownFormat(path.to_path_buf()))
        }
    }

    /// The folder or archive the image was read from.
    pub fn source(&self) -> &Path {
        self.store.path()
    }

    /// Which kind of image source it was read from.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Digest of the chosen manifest (OCI layouts only).
    pub fn manifest_digest(&self) -> Option<&Digest> {
        self.manifest_digest.as_ref()
    }

    /// Digest of the image config (for docker save, the image id).
    pub fn config_digest(&self) -> Option<&Digest> {
        self.config_digest.as_ref()
    }

    /// Platform of the chosen manifest, as its index entry states it or else its config, when
    /// either does; `os_version` the more specific of the two when they agree.
    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    /// The chosen manifest's `os.version` (`10.0.20348.2527`), when the index or config says.
    pub fn os_version(&self) -> Option<&str> {
        self.platform.as_ref()?.os_version.as_deref()
    }

    /// Entries the indexes list for the wanted platform (or for no stated platform) whose blobs
    /// the source does not hold, passed over when the platform alone chose (an export made for
    /// one platform or Windows version); empty when there are none or a digest was given.
    pub fn absent_alternatives(&self) -> &[ManifestCandidate] {
        &self.absent_alternatives
    }

    /// Layers bottom-up (index 0 is the base layer).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Streams one layer blob as stored (compressed or not); the read that reaches the end fails
    /// with [`Error::DigestMismatch`] / [`Error::SizeMismatch`] (inside an `io::Error` of kind
    /// `InvalidData`) when the bytes are not the ones the manifest names.
    pub fn open_layer(&self, index: usize) -> Result<VerifyingReader<Box<dyn Read>>> {
        let layer = self.layers.get(index).ok_or_else(|| Error::Invalid {
            source_path: self.source().to_path_buf(),
            member: String::new(),
            message: format!(
                "no layer with index {index} (image has {}, from 0)",
                self.layers.len()
            ),
        })?;
        if !layer.present {
            return Err(missing_layer(&self.store, layer));
        }
        let (reader, size) = self.store.open_member(&layer.member)?;
        let expected_size = layer.size.or(Some(size));
        Ok(VerifyingReader::new(
            reader,
            layer.digest.clone(),
            expected_size,
            self.source().to_path_buf(),
            layer.member.clone(),
        ))
    }
}

fn missing_layer(store: &Store, layer: &Layer) -> Error {
    if layer.foreign {
        Error::ForeignLayerMissing {
            source_path: store.path().to_path_buf(),
            index: layer.index,
            digest: layer.digest.to_string(),
            urls: if layer.urls.is_empty() {
                "(no urls given)".into()
            } else {
                layer.urls.join(", ")
            },
        }
    } else {
        Error::MissingMember {
            source_path: store.path().to_path_buf(),
            member: layer.member.clone(),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    member: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Json {
        source_path: store.path().to_path_buf(),
        member: member.to_string(),
        message: e.to_string(),
    })
}

fn parse_digest(store: &Store, member: &str, digest: &str) -> Result<Digest> {
    Digest::parse(digest).map_err(|message| Error::BadDigest {
        source_path: store.path().to_path_buf(),
        member: member.to_string(),
        digest: digest.to_string(),
        message,
    })
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Reads a JSON blob and checks it against its digest and declared size; `None` when the blob
/// is absent (an OCI layout may lack blobs it references).
fn read_blob_if_present(
    store: &Store,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Option<Vec<u8>>> {
    let member = blob_member(digest);
    let bytes = match store.read_small(&member, JSON_LIMIT) {
        Ok(bytes) => bytes,
        Err(Error::MissingMember { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    check_bytes(store, &member, digest, size, &bytes)?;
    Ok(Some(bytes))
}

fn check_bytes(
    store: &Store,
    member: &str,
    digest: &Digest,
    size: Option<u64>,
    bytes: &[u8],
) -> Result<()> {
    if let Some(expected) = size {
        if expected != bytes.len() as u64 {
            return Err(Error::SizeMismatch {
                source_path: store.path().to_path_buf(),
                member: member.to_string(),
                expected,
                actual: bytes.len() as u64,
            });
        }
    }
    let actual = Digest::of(bytes);
    if &actual != digest {
        return Err(Error::DigestMismatch {
            source_path: store.path().to_path_buf(),
            member: member.to_string(),
            expected: digest.to_string(),
            actual: actual.to_string(),
            bytes: bytes.len() as u64,
        });
    }
    Ok(())
}

/// Splits a layer media type into (compression, foreign); `None` when it is not a layer type.
fn layer_media_type(media_type: &str) -> Option<(Compression, bool)> {
    let (base, foreign) = match media_type {
        "application/vnd.oci.image.layer.v1.tar" => (Compression::None, false),
        "application/vnd.oci.image.layer.v1.tar+gzip" => (Compression::Gzip, false),
        "application/vnd.oci.image.layer.v1.tar+zstd" => (Compression::Zstd, false),
        "application/vnd.oci.image.layer.nondistributable.v1.tar" => (Compression::None, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => (Compression::Gzip, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => (Compression::Zstd, true),
        "application/vnd.docker.image.rootfs.diff.tar" => (Compression::None, false),
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => (Compression::Gzip, false),
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => (Compression::Zstd, false),
        "application/vnd.docker.image.rootfs.foreign.diff.tar" => (Compression::None, true),
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => (Compression::Gzip, true),
        _ => return None,
    };
    Some((base, foreign))
}

/// A manifest reachable from index.json, with the platform its descriptor states (if any).
struct Candidate {
    digest: Digest,
    declared: Option<DescPlatform>,
    /// The image indexes below index.json it was reached through, outermost first.
    indexes: Vec<Digest>,
    content: Content,
}

/// What the image source holds of a candidate.
enum Content {
    /// The manifest, and its config when that blob is present.
    Manifest {
        manifest: Box<Manifest>,
        config_digest: Digest,
        config: Option<Config>,
    },
    /// Only the descriptor: the blob of this manifest (or image index) is not in the source.
    Absent { index: bool },
}

impl Candidate {
    fn config(&self) -> Option<&Config> {
        match &self.content {
            Content::Manifest { config, .. } => config.as_ref(),
            Content::Absent { .. } => None,
        }
    }

    /// The index entry's platform when it names an os, else the config's; of the two
    /// os.versions the more specific when they agree, else the index entry's.
    fn platform(&self) -> Platform {
        let config = self.config().map(Config::platform).unwrap_or(Platform {
            os: String::new(),
            architecture: String::new(),
            variant: None,
            os_version: None,
        });
        let Some(d) = self.declared.as_ref().filter(|d| !d.os.is_empty()) else {
            return config;
        };
        let os_version = match (non_empty(&d.os_version), config.os_version) {
            (Some(a), Some(b)) if versions_agree(&a, &b) => Some(more_specific(a, b)),
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        // A variant stated on one side only is taken from there; the two agree when both state
        // one (check_declared).
        let variant = non_empty(&d.variant).or(config.variant);
        Platform {
            os: d.os.clone(),
            architecture: d.architecture.clone(),
            variant,
            os_version,
        }
    }

    /// How [`choose`] sees it.
    fn listing(&self) -> Listing {
        let mut aliases = Vec::with_capacity(self.indexes.len() + 1);
        if let Content::Manifest { config_digest, .. } = &self.content {
            aliases.push(config_digest.clone());
        }
        aliases.extend(self.indexes.iter().cloned());
        Listing {
            candidate: ManifestCandidate {
                digest: self.digest.clone(),
                platform: self.platform(),
                present: self.config().is_some(),
            },
            aliases,
        }
    }
}

/// Refuses a manifest whose index entry and config name different platforms; os.versions of
/// which one begins with the other (`10.0.17763`, `10.0.17763.5576`) agree.
fn check_declared(
    store: &Store,
    manifest: &Digest,
    declared: Option<&DescPlatform>,
    config: &Config,
) -> Result<()> {
    let Some(d) = declared.filter(|d| !d.os.is_empty()) else {
        return Ok(());
    };
    if config.os.is_empty() {
        return Ok(()); // not an image config, or one that states nothing
    }
    let declared_version = non_empty(&d.os_version);
    let config_version = non_empty(&config.os_version);
    let declared_variant = non_empty(&d.variant);
    let differs = !d.os.eq_ignore_ascii_case(&config.os)
        || (!d.architecture.is_empty()
            && !config.architecture.is_empty()
            && !d.architecture.eq_ignore_ascii_case(&config.architecture))
        || matches!((&declared_variant, non_empty(&config.variant)),
            (Some(a), Some(b)) if !a.eq_ignore_ascii_case(&b))
        || matches!((&declared_version, &config_version),
            (Some(a), Some(b)) if !versions_agree(a, b));
    if !differs {
        return Ok(());
    }
    Err(Error::PlatformMismatch {
        source_path: store.path().to_path_buf(),
        manifest: manifest.to_string(),
        declared: Platform {
            os: d.os.clone(),
            architecture: d.architecture.clone(),
            variant: declared_variant,
            os_version: declared_version,
        }
        .to_string(),
        config: config.platform().to_string(),
    })
}

/// A manifest as [`choose`] sees it: what errors list, and the other digests that name it.
struct Listing {
    candidate: ManifestCandidate,
    /// In OCI layouts: its config digest (the image id docker 25+ shows) and the image indexes
    /// it is listed under (the image id of docker's containerd store).
    aliases: Vec<Digest>,
}

impl Listing {
    fn names(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.candidate.digest).chain(&self.aliases)
    }
}

/// The distinct manifests among `hits` (first occurrence of each digest), in order.
fn distinct<'a>(hits: impl IntoIterator<Item = &'a ManifestCandidate>) -> Vec<ManifestCandidate> {
    let mut seen = std::collections::HashSet::new();
    hits.into_iter()
        .filter(|c| seen.insert(&c.digest))
        .cloned()
        .collect()
}

/// Picks the position in `listed` (index or manifest.json order) that `selector` names; see
/// [`Image::open_with`] for the rules.
fn choose(source: &Path, listed: &[Listing], selector: &Selector) -> Result<usize> {
    let wanted = &selector.platform;
    let all: Vec<(usize, &ManifestCandidate)> =
        listed.iter().map(|l| &l.candidate).enumerate().collect();
    let Some(prefix) = &selector.digest else {
        return choose_by_platform(source, &all, wanted, wanted.to_string());
    };
    let mut named: Vec<&Digest> = Vec::new();
    for d in listed.iter().flat_map(Listing::names) {
        if prefix.matches(d) && !named.contains(&d) {
            named.push(d);
        }
    }
    let hits: Vec<(usize, &ManifestCandidate)> = listed
        .iter()
        .enumerate()
        .filter(|(_, l)| l.names().any(|d| prefix.matches(d)))
        .map(|(i, l)| (i, &l.candidate))
        .collect();
    // A digest that is some manifest's own names that manifest, whatever it also is to others
    // (a config or an index they share).
    let own: Vec<(usize, &ManifestCandidate)> = hits
        .iter()
        .filter(|(_, c)| prefix.matches(&c.digest))
        .copied()
        .collect();
    let hits = if own.is_empty() { hits } else { own };
    let hit_manifests = distinct(hits.iter().map(|(_, c)| *c));
    let Some(only) = hit_manifests.first() else {
        return Err(Error::NoSuchManifest {
            source_path: source.to_path_buf(),
            wanted: prefix.to_string(),
            available: or_none(distinct(all.iter().map(|(_, c)| *c)).iter()),
        });
    };
    if hit_manifests.len() == 1 {
        // The same manifest may be listed more than once, under different platforms.
        return hits
            .iter()
            .find(|(_, c)| c.platform.os.is_empty() || wanted.matches(&c.platform))
            .map(|(i, _)| *i)
            .ok_or_else(|| Error::ManifestNotForPlatform {
                source_path: source.to_path_buf(),
                digest: only.digest.to_string(),
                platform: only.platform.to_string(),
                wanted: wanted.to_string(),
            });
    }
    if named.len() > 1 {
        return Err(Error::AmbiguousDigestPrefix {
            source_path: source.to_path_buf(),
            prefix: prefix.to_string(),
            candidates: hit_manifests,
        });
    }
    // One digest naming several manifests: an image index (or a config they share); the
    // platform chooses among them.
    choose_by_platform(
        source,
        &hits,
        wanted,
        format!("{wanted} among those {prefix} names"),
    )
}

/// Picks among `pool` by platform alone: the one manifest for it, or else the only manifest
/// when none names a platform at all. `wanted_text` says what was asked for in errors.
fn choose_by_platform(
    source: &Path,
    pool: &[(usize, &ManifestCandidate)],
    wanted: &Platform,
    wanted_text: String,
) -> Result<usize> {
    let hits: Vec<&(usize, &ManifestCandidate)> = pool
        .iter()
        .filter(|(_, c)| wanted.matches(&c.platform))
        .collect();
    let named = distinct(hits.iter().map(|(_, c)| *c));
    // Several match, but the archive holds only one of them (an export made for one platform):
    // that one is the only choice that can be read.
    let present: Vec<&&(usize, &ManifestCandidate)> =
        hits.iter().filter(|(_, c)| c.present).collect();
    let only_present = present.first().filter(|(_, first)| {
        present
            .iter()
            .all(|(_, other)| other.digest == first.digest)
    });
    match (hits.first(), named.len()) {
        (Some((i, _)), 1) => Ok(*i),
        (Some(_), _) if only_present.is_some() => Ok(only_present.map_or(0, |(i, _)| *i)),
        (Some(_), _) => Err(Error::AmbiguousManifest {
            source_path: source.to_path_buf(),
            wanted: wanted_text,
            candidates: named,
        }),
        (None, _) => {
            let everything = distinct(pool.iter().map(|(_, c)| *c));
            if let ([(i, _), ..], [_]) = (pool, everything.as_slice()) {
                if everything.iter().all(|c| c.platform.os.is_empty()) {
                    return Ok(*i);
                }
            }
            let mut available: Vec<String> = Vec::new();
            for c in everything {
                let mut text = if c.platform.os.is_empty() {
                    format!("{} (no platform)", c.digest.short())
                } else {
                    c.platform.to_string()
                };
                if !c.present {
                    text.push_str(" (not in the archive)");
                }
                if !available.contains(&text) {
                    available.push(text);
                }
            }
            Err(Error::NoMatchingManifest {
                source_path: source.to_path_buf(),
                wanted: wanted_text,
                available: or_none(available.iter()),
            })
        }
    }
}

/// The items comma-separated, or "none".
fn or_none<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let text = items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    if text.is_empty() {
        "none".into()
    } else {
        text
    }
}

/// Refuses a config whose `rootfs.diff_ids` (when it lists any) do not pair up with the layers.
fn check_diff_id_count(
    store: &Store,
    config_member: &str,
    diff_ids: &[String],
    layers: usize,
) -> Result<()> {
    if diff_ids.is_empty() || diff_ids.len() == layers {
        return Ok(());
    }
    Err(Error::DiffIdCount {
        source_path: store.path().to_path_buf(),
        member: config_member.to_string(),
        layers,
        diff_ids: diff_ids.len(),
    })
}

/// Gathers the manifests `index` lists, following nested indexes (`via`: the ones below
/// index.json that led here). Attestations and artifacts are skipped; a manifest or index whose
/// blob is absent is kept as an absent candidate, an error only if it is chosen.
fn collect_manifests(
    store: &Store,
    via: &[Digest],
    index: Index,
    inherited: Option<DescPlatform>,
    depth: usize,
    out: &mut Vec<Candidate>,
    expanded: &mut std::collections::HashSet<Digest>,
) -> Result<()> {
    let referrer = via
        .last()
        .map_or_else(|| "index.json".to_string(), blob_member);
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: referrer,
            message: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
        });
    }
    if out.len() + index.manifests.len() > MAX_MANIFESTS {
        return Err(Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: referrer,
            message: format!("indexes list more than {MAX_MANIFESTS} manifests"),
        });
    }
    for desc in index.manifests {
        if desc.is_attestation() {
            continue;
        }
        let declared = desc.platform.clone().or_else(|| inherited.clone());
        let is_index = desc.media_type == MT_OCI_INDEX || desc.media_type == MT_DOCKER_LIST;
        let is_manifest = desc.media_type == MT_OCI_MANIFEST
            || desc.media_type == MT_DOCKER_MANIFEST
            || desc.media_type.is_empty();
        if !is_index && !is_manifest {
            continue; // artifacts, signatures, attestations of unknown type
        }
        let digest = parse_digest(store, &referrer, &desc.digest)?;
        let Some(bytes) = read_blob_if_present(store, &digest, desc.size)? else {
            out.push(Candidate {
                digest,
                declared,
                indexes: via.to_vec(),
                content: Content::Absent { index: is_index },
            });
            continue;
        };
        let member = blob_member(&digest);
        let below = [via, std::slice::from_ref(&digest)].concat();
        if is_index {
            // An index listed again (hostile fan-out, or the same index under two names) adds
            // nothing new: its manifests are already gathered.
            if expanded.insert(digest.clone()) {
                let nested: Index = parse_json(store, &member, &bytes)?;
                collect_manifests(store, &below, nested, declared, depth + 1, out, expanded)?;
            }
            continue;
        }
        let manifest: Manifest = parse_json(store, &member, &bytes)?;
        if manifest.manifests.is_some() || manifest.media_type == MT_OCI_INDEX {
            if expanded.insert(digest.clone()) {
                let nested: Index = parse_json(store, &member, &bytes)?;
                collect_manifests(store, &below, nested, declared, depth + 1, out, expanded)?;
            }
            continue;
        }
        let config_digest = parse_digest(store, &member, &manifest.config.digest)?;
        // A config that is not an image config (an artifact) parses to the defaults.
        let config = read_blob_if_present(store, &config_digest, manifest.config.size)?
            .map(|bytes| serde_json::from_slice(&bytes).unwrap_or_default());
        out.push(Candidate {
            digest,
            declared,
            indexes: via.to_vec(),
            content: Content::Manifest {
                manifest: Box::new(manifest),
                config_digest,
                config,
            },
        });
    }
    Ok(())
}

/// The layer members `manifest.json` lists for the image with this config, when the source has
/// one: docker 25+ writes it beside the OCI layout.
fn docker_save_layers(store: &Store, config_digest: &Digest) -> Option<Vec<String>> {
    let bytes = store.read_small("manifest.json", JSON_LIMIT).ok()?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&bytes).ok()?;
    let config = blob_member(config_digest);
    entries
        .into_iter()
        .find(|e| store::normalize(&e.config).as_deref() == Some(config.as_str()))
        .map(|e| e.layers)
}

fn open_oci(store: Store, selector: &Selector) -> Result<Image> {
    let bytes = store.read_small("index.json", JSON_LIMIT)?;
    let index: Index = parse_json(&store, "index.json", &bytes)?;
    let mut candidates = Vec::new();
    collect_manifests(
        &store,
        &[],
        index,
        None,
        0,
        &mut candidates,
        &mut std::collections::HashSet::new(),
    )?;
    let listed: Vec<Listing> = candidates.iter().map(Candidate::listing).collect();
    let chosen = choose(store.path(), &listed, selector)?;
    // Without a digest the platform chose: absent entries it could have meant (for the same
    // platform, or stating none, as an absent nested index does) were passed over.
    let absent_alternatives = match listed.get(chosen) {
        Some(pick) if selector.digest.is_none() => {
            distinct(listed.iter().map(|l| &l.candidate).filter(|c| {
                !c.present
                    && c.digest != pick.candidate.digest
                    && (c.platform.os.is_empty() || selector.platform.matches(&c.platform))
            }))
        }
        _ => Vec::new(),
    };
    let c = candidates
        .into_iter()
        .nth(chosen)
        .ok_or_else(|| Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: "index.json".into(),
            message: "chosen manifest vanished".into(),
        })?;
    let platform = c.platform();
    let (manifest, config_digest, config) = match c.content {
        Content::Manifest {
            manifest,
            config_digest,
            config: Some(config),
        } => (manifest, config_digest, config),
        Content::Manifest {
            config_digest,
            config: None,
            ..
        } => {
            return Err(Error::MissingMember {
                source_path: store.path().to_path_buf(),
                member: blob_member(&config_digest),
            })
        }
        Content::Absent { index } => {
            return Err(Error::ManifestNotInArchive {
                source_path: store.path().to_path_buf(),
                index,
                digest: c.digest.to_string(),
                platform: (!platform.os.is_empty()).then(|| platform.to_string()),
                listed_in: c
                    .indexes
                    .last()
                    .map_or_else(|| "index.json".into(), |d| format!("index {d}")),
            })
        }
    };
    check_declared(&store, &c.digest, c.declared.as_ref(), &config)?;
    let manifest_member = blob_member(&c.digest);
    let config_member = blob_member(&config_digest);
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    check_diff_id_count(&store, &config_member, &diff_ids, manifest.layers.len())?;
    let mut saved_layers: Option<Option<Vec<String>>> = None;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (index, desc) in manifest.layers.into_iter().enumerate() {
        let digest = parse_digest(&store, &manifest_member, &desc.digest)?;
        let (compression, foreign) =
            layer_media_type(&desc.media_type).ok_or_else(|| Error::UnsupportedMediaType {
                source_path: store.path().to_path_buf(),
                index,
                digest: digest.to_string(),
                media_type: desc.media_type.clone(),
            })?;
        let diff_id = match diff_ids.get(index) {
            Some(d) => Some(parse_digest(&store, &config_member, d)?),
            None => None,
        };
        let member = blob_member(&digest);
        let foreign = foreign || !desc.urls.is_empty();
        if !store.exists(&member) {
            // docker 25+ saves a foreign layer's tar under its diff_id while the OCI manifest
            // keeps the registry's descriptor; its manifest.json names the saved file (moby
            // image/tarexport/save.go).
            let saved = saved_layers
                .get_or_insert_with(|| docker_save_layers(&store, &config_digest))
                .as_ref()
                .and_then(|s| s.get(index))
                .filter(|m| store.exists(m));
            if let (Some(saved), Some(diff_id)) = (saved, &diff_id) {
                let (head, size) = store.head(saved)?;
                // An uncompressed file must be the tar the config names (its digest is the
                // diff_id); a compressed one is checked against the digest its name states, and
                // its tar against the diff_id by whoever decompresses it.
                let compression = sniff_compression(&head);
                let named = saved
                    .strip_prefix("blobs/sha256/")
                    .and_then(|hex| Digest::from_hex(hex).ok())
                    .filter(|_| compression != Compression::None);
                layers.push(Layer {
                    index,
                    digest: named.unwrap_or_else(|| diff_id.clone()),
                    diff_id: Some(diff_id.clone()),
                    media_type: desc.media_type,
                    compression,
                    size: Some(size),
                    foreign,
                    urls: desc.urls,
                    present: true,
                    member: saved.clone(),
                });
                continue;
            }
        }
        // A blob of another size than its descriptor's fails here, not after the layers below
        // it were imported.
        let stored_size = store.member_size(&member);
        if let (Some(stored), Some(declared)) = (stored_size, desc.size) {
            if stored != declared {
                return Err(Error::SizeMismatch {
                    source_path: store.path().to_path_buf(),
                    member,
                    expected: declared,
                    actual: stored,
                });
            }
        }
        layers.push(Layer {
            index,
            present: stored_size.is_some(),
            digest,
            diff_id,
            media_type: desc.media_type,
            compression,
            size: desc.size,
            foreign,
            urls: desc.urls,
            member,
        });
    }
    Ok(Image {
        store,
        format: Format::OciLayout,
        manifest_digest: Some(c.digest),
        config_digest: Some(config_digest),
        platform: (!platform.os.is_empty()).then_some(platform),
        layers,
        absent_alternatives,
    })
}

fn open_docker(store: Store, selector: &Selector) -> Result<Image> {
    let bytes = store.read_small("manifest.json", JSON_LIMIT)?;
    let entries: Vec<DockerManifestEntry> = parse_json(&store, "manifest.json", &bytes)?;
    if entries.is_empty() {
        return Err(Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: "manifest.json".into(),
            message: "no images listed".into(),
        });
    }
    let mut configs = Vec::with_capacity(entries.len());
    let mut listed = Vec::with_capacity(entries.len());
    for entry in &entries {
        let config_bytes = store.read_small(&entry.config, JSON_LIMIT)?;
        let config: Config = parse_json(&store, &entry.config, &config_bytes)?;
        listed.push(Listing {
            candidate: ManifestCandidate {
                // The image id: what `docker images --no-trunc` shows.
                digest: Digest::of(&config_bytes),
                platform: config.platform(),
                present: true,
            },
            aliases: Vec::new(),
        });
        configs.push(config);
    }
    let chosen = choose(store.path(), &listed, selector)?;
    let (entry, config, candidate) = entries
        .into_iter()
        .zip(configs)
        .zip(listed)
        .nth(chosen)
        .map(|((e, c), l)| (e, c, l.candidate))
        .ok_or_else(|| Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: "manifest.json".into(),
            message: "chosen image vanished".into(),
        })?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    check_diff_id_count(&store, &entry.config, &diff_ids, entry.layers.len())?;
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (index, member) in entry.layers.into_iter().enumerate() {
        let diff_id = match diff_ids.get(index) {
            Some(d) => Some(parse_digest(&store, &entry.config, d)?),
            None => None,
        };
        // Newer docker (v25+) names layers by blob digest; older ones by a v1 id, where the
        // file is the uncompressed tar, so its digest is the config's diff_id.
        let digest = match member
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::from_hex(hex).ok())
        {
            Some(d) => d,
            None => diff_id.clone().ok_or_else(|| Error::Invalid {
                source_path: store.path().to_path_buf(),
                member: member.clone(),
                message: format!(
                    "layer {}: no digest (config has no diff_id for it)",
                    index + 1
                ),
            })?,
        };
        let source = diff_id
            .as_ref()
            .and_then(|d| entry.layer_sources.get(&d.to_string()));
        let present = store.exists(&member);
        let (head, stored_size) = if present {
            let (head, size) = store.head(&member)?;
            (head, Some(size))
        } else {
            (Vec::new(), None)
        };
        let compression = sniff_compression(&head);
        let (media_type, foreign, urls, size) = match source {
            Some(desc) => (
                desc.media_type.clone(),
                layer_media_type(&desc.media_type).is_some_and(|(_, f)| f),
                desc.urls.clone(),
                // A LayerSources descriptor describes the registry blob, not the saved file.
                stored_size,
            ),
            None => (
                "application/vnd.docker.image.rootfs.diff.tar".to_string(),
                false,
                Vec::new(),
                stored_size,
            ),
        };
        layers.push(Layer {
            index,
            digest,
            diff_id,
            media_type,
            compression,
            size,
            foreign,
            urls,
            present,
            member,
        });
    }
    let platform = candidate.platform;
    Ok(Image {
        store,
        format: Format::DockerSave,
        manifest_digest: None,
        config_digest: Some(candidate.digest),
        platform: (!platform.os.is_empty()).then_some(platform),
        layers,
        absent_alternatives: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(s: &str) -> Platform {
        Platform::parse(s).expect(s)
    }

    #[test]
    fn platforms_parse_in_both_version_syntaxes() {
        assert_eq!(platform("windows/amd64"), Platform::windows_amd64());
        let versioned = Platform {
            os_version: Some("10.0.20348".into()),
            ..Platform::windows_amd64()
        };
        assert_eq!(platform("windows/amd64:10.0.20348"), versioned);
        assert_eq!(platform("windows(10.0.20348)/amd64"), versioned);
        assert_eq!(versioned.to_string(), "windows/amd64:10.0.20348");
        assert_eq!(
            platform("windows/amd64:10.0.20348.2527")
                .os_version
                .as_deref(),
            Some("10.0.20348.2527")
        );
        for bad in [
            "windows",
            "/amd64",
            "windows/",
            "windows/amd64:",
            "windows/amd64:10.0",
            "windows/amd64:10.0.20348.1.2",
            "windows/amd64:10.0.x",
            "windows/amd64:10..20348",
            "windows(10.0.20348/amd64",
            "windows(10.0.20348)/amd64:10.0.20348",
            "windows:10.0.20348/amd64",
            ":10.0.20348/amd64",
            "linux/arm/",
            "linux/arm/v7/x",
            "windows/arm64/(v8)",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(Error::BadPlatform { .. })),
                "{bad}"
            );
        }
        let err = Platform::parse("windows:10.0.20348/amd64").expect_err("misplaced version");
        assert!(
            err.to_string()
                .contains("windows/amd64:10.0.20348 or windows(10.0.20348)/amd64"),
            "{err}"
        );
    }

    #[test]
    fn variants_parse_and_match_with_the_architectures_usual_one_by_default() {
        let arm = platform("windows(10.0.26100)/arm64/v8");
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(arm.os_version.as_deref(), Some("10.0.26100"));
        assert_eq!(arm, platform("windows/arm64/v8:10.0.26100"));
        assert_eq!(arm.to_string(), "windows/arm64/v8:10.0.26100");
        let image = |arch: &str, variant: Option<&str>| Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
            os_version: None,
        };
        for (wanted, arch, variant, hit) in [
            ("linux/arm64/v8", "arm64", None, true),
            ("linux/arm64/V8", "arm64", Some("v8"), true),
            ("linux/arm64/v9", "arm64", None, false),
            ("linux/arm/v7", "arm", None, true),
            ("linux/arm/v6", "arm", None, false),
            ("linux/arm/v6", "arm", Some("v6"), true),
            ("linux/arm", "arm", Some("v6"), true),
            ("linux/amd64/v3", "amd64", None, false),
            ("linux/amd64/v3", "amd64", Some("v3"), true),
        ] {
            assert_eq!(
                platform(wanted).matches(&image(arch, variant)),
                hit,
                "{wanted} vs {arch} {variant:?}"
            );
        }
    }

    #[test]
    fn versions_match_by_leading_components() {
        let image = Platform {
            os_version: Some("10.0.20348.2527".into()),
            ..Platform::windows_amd64()
        };
        for (wanted, hit) in [
            ("windows/amd64", true),
            ("WINDOWS/AMD64", true),
            ("windows/amd64:10.0.20348", true),
            ("windows/amd64:10.0.20348.2527", true),
            ("windows/amd64:10.0.020348", true),
            ("windows/amd64:10.0.20348.2528", false),
            ("windows/amd64:10.0.2034", false),
            ("windows/amd64:10.0.17763", false),
            ("windows/arm64:10.0.20348", false),
        ] {
            assert_eq!(platform(wanted).matches(&image), hit, "{wanted}");
        }
        // A wanted revision needs the image to state one; a wanted version needs a version.
        let build_only = Platform {
            os_version: Some("10.0.20348".into()),
            ..Platform::windows_amd64()
        };
        assert!(!platform("windows/amd64:10.0.20348.1").matches(&build_only));
        assert!(!platform("windows/amd64:10.0.20348").matches(&Platform::windows_amd64()));
    }

    fn digest(hex_start: &str) -> Digest {
        Digest::from_hex(&format!("{hex_start:0<64}")).expect("hex")
    }

    fn candidate(hex_start: &str, version: Option<&str>) -> Listing {
        Listing {
            candidate: ManifestCandidate {
                digest: digest(hex_start),
                platform: Platform {
                    os_version: version.map(Into::into),
                    ..Platform::windows_amd64()
                },
                present: true,
            },
            aliases: Vec::new(),
        }
    }

    fn select(platform_text: &str, digest: Option<&str>) -> Selector {
        Selector {
            platform: platform(platform_text),
            digest: digest.map(|d| DigestPrefix::parse(d).expect(d)),
        }
    }

    #[test]
    fn choice_refuses_to_guess() {
        let src = Path::new("img");
        let list = [
            candidate("aaaaaaaaaaaa1", Some("10.0.17763.1")),
            candidate("aaaaaaaaaaaa2", Some("10.0.20348.5")),
            candidate("bbbbbbbbbbbb", Some("10.0.20348.5")),
            // Listed twice: one manifest, not a choice.
            candidate("cccccccccccc", Some("10.0.26100.1")),
            candidate("cccccccccccc", Some("10.0.26100.1")),
        ];
        let err = choose(src, &list, &select("windows/amd64", None)).expect_err("ambiguous");
        match &err {
            Error::AmbiguousManifest { candidates, .. } => assert_eq!(candidates.len(), 4),
            other => panic!("unexpected {other}"),
        }
        assert!(
            err.to_string().contains(
                "sha256:aaaaaaaaaaaa (windows/amd64, os.version 10.0.17763.1), \
                 sha256:aaaaaaaaaaaa (windows/amd64, os.version 10.0.20348.5)"
            ),
            "{err}"
        );
        assert_eq!(
            choose(src, &list, &select("windows/amd64:10.0.17763", None)).expect("ltsc2019"),
            0
        );
        assert_eq!(
            choose(src, &list, &select("windows/amd64:10.0.26100", None)).expect("same digest"),
            3
        );
        // Same version, different manifests: still a guess, which only a digest settles.
        let err = choose(src, &list, &select("windows/amd64:10.0.20348", None))
            .expect_err("same version twice");
        assert!(
            matches!(err, Error::AmbiguousManifest { .. })
                && err.to_string().ends_with("; choose one by digest"),
            "{err}"
        );
        assert_eq!(
            choose(src, &list, &select("windows/amd64", Some("bbbbbbbbbbbb"))).expect("by digest"),
            2
        );
        let err = choose(src, &list, &select("windows/amd64", Some("aaaaaaaaaaaa")))
            .expect_err("prefix names two");
        assert!(
            matches!(&err, Error::AmbiguousDigestPrefix { candidates, .. } if candidates.len() == 2),
            "{err}"
        );
        assert_eq!(
            choose(src, &list, &select("windows/amd64", Some("aaaaaaaaaaaa2"))).expect("longer"),
            1
        );
        assert!(matches!(
            choose(src, &list, &select("windows/amd64", Some("dddddddddddd"))),
            Err(Error::NoSuchManifest { .. })
        ));
        assert!(matches!(
            choose(
                src,
                &list,
                &select("windows/amd64:10.0.17763", Some("bbbbbbbbbbbb"))
            ),
            Err(Error::ManifestNotForPlatform { .. })
        ));
        let err = choose(src, &list, &select("windows/amd64:10.0.22000", None))
            .expect_err("no such version");
        assert!(
            matches!(&err, Error::NoMatchingManifest { available, .. }
                if available.contains("windows/amd64:10.0.17763.1")),
            "{err}"
        );
    }

    #[test]
    fn versions_agree_when_one_begins_the_other() {
        assert!(versions_agree("10.0.17763", "10.0.17763.5576"));
        assert!(versions_agree("10.0.17763.5576", "10.0.17763"));
        assert!(versions_agree("10.0.017763", "10.0.17763"));
        assert!(!versions_agree("10.0.17763.5576", "10.0.17763.5577"));
        assert!(!versions_agree("10.0.1776", "10.0.17763"));
        assert_eq!(
            more_specific("10.0.17763".into(), "10.0.17763.5576".into()),
            "10.0.17763.5576"
        );
        assert_eq!(
            more_specific("10.0.17763.5576".into(), "10.0.17763".into()),
            "10.0.17763.5576"
        );
    }

    #[test]
    fn choice_by_config_or_index_digest() {
        let src = Path::new("img");
        let index = digest("eeeeeeeeeeee");
        let mut ltsc2019 = candidate("aaaaaaaaaaaa", Some("10.0.17763.1"));
        ltsc2019.aliases = vec![digest("c1c1c1c1c1c1"), index.clone()];
        let mut ltsc2022 = candidate("bbbbbbbbbbbb", Some("10.0.20348.5"));
        ltsc2022.aliases = vec![digest("c1c1c1c1c1c1f"), index.clone()];
        let mut linux = candidate("dddddddddddd", None);
        linux.candidate.platform = platform("linux/amd64");
        linux.aliases = vec![digest("c3c3c3c3c3c3"), index];
        let list = [ltsc2019, ltsc2022, linux];
        let pick = |platform_text: &str, digest: &str| {
            choose(src, &list, &select(platform_text, Some(digest)))
        };
        // A config digest names its manifest; a prefix of two configs is ambiguous.
        assert_eq!(pick("windows/amd64", "c1c1c1c1c1c1f").expect("config"), 1);
        assert_eq!(pick("windows/amd64", "c3c3c3c3c3c3").ok(), None);
        let err = pick("windows/amd64", "c1c1c1c1c1c1").expect_err("two configs");
        assert!(
            matches!(&err, Error::AmbiguousDigestPrefix { candidates, .. } if candidates.len() == 2),
            "{err}"
        );
        // An index digest names what it lists; the platform chooses among them.
        assert_eq!(
            pick("windows/amd64:10.0.17763", "eeeeeeeeeeee").expect("ltsc2019"),
            0
        );
        assert_eq!(pick("linux/amd64", "eeeeeeeeeeee").expect("linux"), 2);
        let err = pick("windows/amd64", "eeeeeeeeeeee").expect_err("two windows");
        assert!(
            matches!(&err, Error::AmbiguousManifest { candidates, .. } if candidates.len() == 2)
                && err
                    .to_string()
                    .contains("match windows/amd64 among those sha256:eeeeeeeeeeee names"),
            "{err}"
        );
        let err = pick("windows/arm64", "eeeeeeeeeeee").expect_err("no arm64");
        assert!(
            matches!(&err, Error::NoMatchingManifest { available, .. }
                if available.contains("linux/amd64")),
            "{err}"
        );
    }

    #[test]
    fn absent_manifests_count_for_the_choice_and_are_marked() {
        let src = Path::new("img");
        let mut ltsc2019 = candidate("aaaaaaaaaaaa", Some("10.0.17763.1"));
        ltsc2019.candidate.present = false;
        let list = [ltsc2019, candidate("bbbbbbbbbbbb", Some("10.0.20348.5"))];
        // Only one of the matches can be read: that one is taken.
        assert_eq!(
            choose(src, &list, &select("windows/amd64", None)).expect("the present one"),
            1
        );
        // Two present and one absent: still ambiguous, the absent one marked.
        let mut ltsc2025 = candidate("cccccccccccc", Some("10.0.26100.2"));
        ltsc2025.candidate.present = true;
        let mut absent = candidate("aaaaaaaaaaaa", Some("10.0.17763.1"));
        absent.candidate.present = false;
        let three = [
            absent,
            candidate("bbbbbbbbbbbb", Some("10.0.20348.5")),
            ltsc2025,
        ];
        let err = choose(src, &three, &select("windows/amd64", None)).expect_err("ambiguous");
        let text = err.to_string();
        assert!(
            text.contains(
                "sha256:aaaaaaaaaaaa (windows/amd64, os.version 10.0.17763.1; not in the archive)"
            ),
            "{text}"
        );
        assert_eq!(
            choose(src, &list, &select("windows/amd64:10.0.20348", None)).expect("present"),
            1
        );
        // Chosen all the same: reading it is what fails.
        assert_eq!(
            choose(src, &list, &select("windows/amd64:10.0.17763", None)).expect("absent"),
            0
        );
        let err = choose(src, &list, &select("windows/arm64", None)).expect_err("none");
        assert!(
            err.to_string()
                .contains("windows/amd64:10.0.17763.1 (not in the archive)"),
            "{err}"
        );
    }
}
