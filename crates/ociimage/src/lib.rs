//! OCI image layouts and docker-save archives: which layers, in which order, and their bytes.
//!
//! An image source is a folder or a tar (plain, gzip or zstd) holding either an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) or what `docker save` writes (`manifest.json`).
//! [`Image::open`] picks the manifest for a platform (following nested indexes; refusing to guess
//! between manifests that differ only by OS version) and lists the layers bottom-up;
//! [`Image::open_layer`] streams one layer blob (still compressed, as stored) and fails at its end
//! when the bytes do not match the digest. Sources: OCI image-spec v1.1 (`image-layout.md`,
//! `image-index.md`, `manifest.md`, `layer.md`, `config.md`), moby `image/tarexport`.

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

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Guesses the compression from the first bytes of a blob, as the layer importer does
    /// (`wclayer::detect_compression`); a compression it refuses counts as none here.
    pub fn sniff(head: &[u8]) -> Compression {
        match wclayer::detect_compression(head) {
            Ok(wclayer::Compression::Gzip) => Compression::Gzip,
            Ok(wclayer::Compression::Zstd) => Compression::Zstd,
            Ok(wclayer::Compression::None) | Err(_) => Compression::None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// An operating system, CPU architecture and optionally Windows OS version, as in an image
/// index (`windows/amd64`, `windows/amd64:10.0.20348`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
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
            os_version: None,
        }
    }

    /// Parses `os/architecture`, optionally with an OS version as `os/architecture:version` or
    /// as containerd writes it, `os(version)/architecture`. A version has three or four
    /// dot-separated numbers (`10.0.20348`, `10.0.20348.2527`).
    pub fn parse(s: &str) -> Result<Platform> {
        let bad = |message: &str| Error::BadPlatform {
            input: s.to_string(),
            message: message.to_string(),
        };
        let (os_part, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("want os/architecture, e.g. windows/amd64"))?;
        let (architecture, colon_version) = match rest.split_once(':') {
            Some((arch, version)) => (arch, Some(version)),
            None => (rest, None),
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
        if architecture.contains('/') {
            return Err(bad("a variant (os/architecture/variant) is not supported"));
        }
        if [os, architecture].iter().any(|p| p.contains(['(', ')'])) {
            return Err(bad(
                "want os/architecture, os/architecture:version or os(version)/architecture",
            ));
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
            os_version,
        })
    }

    /// Whether an image's platform is the wanted one: os and architecture equal (ignoring ASCII
    /// case) and, when a version is wanted, the image's version starts with its components.
    pub fn matches(&self, image: &Platform) -> bool {
        self.os.eq_ignore_ascii_case(&image.os)
            && self.architecture.eq_ignore_ascii_case(&image.architecture)
            && match &self.os_version {
                None => true,
                Some(wanted) => image
                    .os_version
                    .as_deref()
                    .is_some_and(|v| version_starts_with(v, wanted)),
            }
    }

    /// `os/arch` without the version.
    fn os_arch(&self) -> String {
        format!("{}/{}", self.os, self.architecture)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
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
    pub platform: Platform,
    /// The manifest digest (OCI layouts) or image id, i.e. config digest (docker save), or its
    /// first hex digits.
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
}

impl fmt::Display for ManifestCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.digest.short())?;
        if self.platform.os.is_empty() {
            return f.write_str("(no platform)");
        }
        match &self.platform.os_version {
            Some(v) => write!(f, "({}, os.version {v})", self.platform.os_arch()),
            None => write!(f, "({}, no os.version)", self.platform.os_arch()),
        }
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
}

#[derive(Deserialize, Clone)]
struct DescPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
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
    /// Without a digest: the one manifest for the platform; several different manifests for it
    /// (typically one per Windows version) are refused with [`Error::AmbiguousManifest`]; when no
    /// manifest names any platform at all and there is exactly one, that one is taken. With a
    /// digest (or prefix): the manifest (OCI layouts) or image (docker save: its config digest,
    /// the image id) it names, which must also be for the platform when it states one.
    ///
    /// The chosen manifest is checked for consistency: the platform its index entry declares
    /// must be the one its config states, and the config's `rootfs.diff_ids`, when it lists
    /// any, must pair up with the layers.
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
    /// either does; `os_version` likewise.
    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    /// The chosen manifest's `os.version` (`10.0.20348.2527`), when the index or config says.
    pub fn os_version(&self) -> Option<&str> {
        self.platform.as_ref()?.os_version.as_deref()
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

/// Reads a JSON blob named by a descriptor and checks its digest and size.
fn read_blob(store: &Store, referrer: &str, desc: &Descriptor) -> Result<(Digest, Vec<u8>)> {
    let digest = parse_digest(store, referrer, &desc.digest)?;
    let member = blob_member(&digest);
    let bytes = store.read_small(&member, JSON_LIMIT)?;
    check_bytes(store, &member, &digest, desc.size, &bytes)?;
    Ok((digest, bytes))
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
    manifest: Manifest,
    config: Config,
    config_digest: Digest,
    declared: Option<DescPlatform>,
}

impl Candidate {
    /// The index entry's platform when it names an os, else the config's; the os.version from
    /// the index entry when it gives one, else from the config.
    fn platform(&self) -> Platform {
        let declared = self.declared.as_ref().filter(|d| !d.os.is_empty());
        let config = self.config.platform();
        match declared {
            Some(d) => Platform {
                os: d.os.clone(),
                architecture: d.architecture.clone(),
                os_version: non_empty(&d.os_version).or(config.os_version),
            },
            None => config,
        }
    }

    /// Refuses a manifest whose index entry and config name different platforms.
    fn check_declared(&self, store: &Store) -> Result<()> {
        let Some(d) = self.declared.as_ref().filter(|d| !d.os.is_empty()) else {
            return Ok(());
        };
        let c = &self.config;
        if c.os.is_empty() {
            return Ok(()); // not an image config, or one that states nothing
        }
        let declared_version = non_empty(&d.os_version);
        let config_version = non_empty(&c.os_version);
        let differs = !d.os.eq_ignore_ascii_case(&c.os)
            || (!d.architecture.is_empty()
                && !c.architecture.is_empty()
                && !d.architecture.eq_ignore_ascii_case(&c.architecture))
            || matches!((&declared_version, &config_version), (Some(a), Some(b)) if a != b);
        if !differs {
            return Ok(());
        }
        Err(Error::PlatformMismatch {
            source_path: store.path().to_path_buf(),
            manifest: self.digest.to_string(),
            declared: Platform {
                os: d.os.clone(),
                architecture: d.architecture.clone(),
                os_version: declared_version,
            }
            .to_string(),
            config: c.platform().to_string(),
        })
    }
}

/// The distinct manifests among `hits` (first occurrence of each digest), in order.
fn distinct<'a>(hits: impl IntoIterator<Item = &'a ManifestCandidate>) -> Vec<ManifestCandidate> {
    let mut out: Vec<ManifestCandidate> = Vec::new();
    for c in hits {
        if !out.iter().any(|o| o.digest == c.digest) {
            out.push(c.clone());
        }
    }
    out
}

/// Picks the position in `candidates` (index or manifest.json order) that `selector` names;
/// see [`Image::open_with`] for the rules.
fn choose(source: &Path, candidates: &[ManifestCandidate], selector: &Selector) -> Result<usize> {
    let wanted = &selector.platform;
    if let Some(prefix) = &selector.digest {
        let hits: Vec<(usize, &ManifestCandidate)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| prefix.matches(&c.digest))
            .collect();
        let named = distinct(hits.iter().map(|(_, c)| *c));
        let Some(only) = named.first() else {
            let available = distinct(candidates)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            return Err(Error::NoSuchManifest {
                source_path: source.to_path_buf(),
                wanted: prefix.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        };
        if named.len() > 1 {
            return Err(Error::AmbiguousDigestPrefix {
                source_path: source.to_path_buf(),
                prefix: prefix.to_string(),
                candidates: named,
            });
        }
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
    let hits: Vec<(usize, &ManifestCandidate)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| wanted.matches(&c.platform))
        .collect();
    let named = distinct(hits.iter().map(|(_, c)| *c));
    match (hits.first(), named.len()) {
        (Some((i, _)), 1) => Ok(*i),
        (Some(_), _) => Err(Error::AmbiguousManifest {
            source_path: source.to_path_buf(),
            wanted: wanted.to_string(),
            candidates: named,
        }),
        (None, _)
            if candidates.len() == 1 && candidates.iter().all(|c| c.platform.os.is_empty()) =>
        {
            Ok(0)
        }
        (None, _) => {
            let mut available: Vec<String> = Vec::new();
            for c in distinct(candidates) {
                let text = if c.platform.os.is_empty() {
                    format!("{} (no platform)", c.digest.short())
                } else {
                    c.platform.to_string()
                };
                if !available.contains(&text) {
                    available.push(text);
                }
            }
            Err(Error::NoMatchingManifest {
                source_path: source.to_path_buf(),
                wanted: wanted.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            })
        }
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

fn collect_manifests(
    store: &Store,
    referrer: &str,
    index: Index,
    inherited: Option<DescPlatform>,
    depth: usize,
    out: &mut Vec<Candidate>,
) -> Result<()> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: referrer.to_string(),
            message: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
        });
    }
    for desc in index.manifests {
        let declared = desc.platform.clone().or_else(|| inherited.clone());
        let is_index = desc.media_type == MT_OCI_INDEX || desc.media_type == MT_DOCKER_LIST;
        let is_manifest = desc.media_type == MT_OCI_MANIFEST
            || desc.media_type == MT_DOCKER_MANIFEST
            || desc.media_type.is_empty();
        if !is_index && !is_manifest {
            continue; // artifacts, signatures, attestations of unknown type
        }
        let (digest, bytes) = read_blob(store, referrer, &desc)?;
        let member = blob_member(&digest);
        if is_index {
            let nested: Index = parse_json(store, &member, &bytes)?;
            collect_manifests(store, &member, nested, declared, depth + 1, out)?;
            continue;
        }
        let manifest: Manifest = parse_json(store, &member, &bytes)?;
        if manifest.manifests.is_some() || manifest.media_type == MT_OCI_INDEX {
            let nested: Index = parse_json(store, &member, &bytes)?;
            collect_manifests(store, &member, nested, declared, depth + 1, out)?;
            continue;
        }
        let (config_digest, config_bytes) = read_blob(store, &member, &manifest.config)?;
        // A config that is not an image config (an artifact) parses to the defaults.
        let config: Config = serde_json::from_slice(&config_bytes).unwrap_or_default();
        out.push(Candidate {
            digest,
            manifest,
            config,
            config_digest,
            declared,
        });
    }
    Ok(())
}

fn open_oci(store: Store, selector: &Selector) -> Result<Image> {
    let bytes = store.read_small("index.json", JSON_LIMIT)?;
    let index: Index = parse_json(&store, "index.json", &bytes)?;
    let mut candidates = Vec::new();
    collect_manifests(&store, "index.json", index, None, 0, &mut candidates)?;
    let listed: Vec<ManifestCandidate> = candidates
        .iter()
        .map(|c| ManifestCandidate {
            digest: c.digest.clone(),
            platform: c.platform(),
        })
        .collect();
    let chosen = choose(store.path(), &listed, selector)?;
    let c = candidates
        .into_iter()
        .nth(chosen)
        .ok_or_else(|| Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: "index.json".into(),
            message: "chosen manifest vanished".into(),
        })?;
    c.check_declared(&store)?;
    let platform = c.platform();
    let manifest_member = blob_member(&c.digest);
    let diff_ids = c.config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    check_diff_id_count(
        &store,
        &blob_member(&c.config_digest),
        &diff_ids,
        c.manifest.layers.len(),
    )?;
    let mut layers = Vec::with_capacity(c.manifest.layers.len());
    for (index, desc) in c.manifest.layers.into_iter().enumerate() {
        let digest = parse_digest(&store, &manifest_member, &desc.digest)?;
        let (compression, foreign) =
            layer_media_type(&desc.media_type).ok_or_else(|| Error::UnsupportedMediaType {
                source_path: store.path().to_path_buf(),
                index,
                digest: digest.to_string(),
                media_type: desc.media_type.clone(),
            })?;
        let diff_id = match diff_ids.get(index) {
            Some(d) => Some(parse_digest(&store, &blob_member(&c.config_digest), d)?),
            None => None,
        };
        let member = blob_member(&digest);
        layers.push(Layer {
            index,
            present: store.exists(&member),
            digest,
            diff_id,
            media_type: desc.media_type,
            compression,
            size: desc.size,
            foreign: foreign || !desc.urls.is_empty(),
            urls: desc.urls,
            member,
        });
    }
    Ok(Image {
        store,
        format: Format::OciLayout,
        manifest_digest: Some(c.digest),
        config_digest: Some(c.config_digest),
        platform: (!platform.os.is_empty()).then_some(platform),
        layers,
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
        listed.push(ManifestCandidate {
            // The image id: what `docker images --no-trunc` shows.
            digest: Digest::of(&config_bytes),
            platform: config.platform(),
        });
        configs.push(config);
    }
    let chosen = choose(store.path(), &listed, selector)?;
    let (entry, config, candidate) = entries
        .into_iter()
        .zip(configs)
        .zip(listed)
        .nth(chosen)
        .map(|((e, c), l)| (e, c, l))
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
        let compression = Compression::sniff(&head);
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
            "linux/arm/v7",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(Error::BadPlatform { .. })),
                "{bad}"
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

    fn candidate(hex_start: &str, version: Option<&str>) -> ManifestCandidate {
        let hex = format!("{hex_start:0<64}");
        ManifestCandidate {
            digest: Digest::from_hex(&hex).expect("hex"),
            platform: Platform {
                os_version: version.map(Into::into),
                ..Platform::windows_amd64()
            },
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
}
