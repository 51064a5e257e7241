//! OCI image layouts and docker-save archives: which layers, in which order, and their bytes.
//!
//! An image source is a folder or a tar (plain, gzip or zstd) holding either an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) or what `docker save` writes (`manifest.json`).
//! [`Image::open`] picks the manifest for a platform (following nested indexes) and lists the
//! layers bottom-up; [`Image::open_layer`] streams one layer blob (still compressed, as stored)
//! and fails at its end when the bytes do not match the digest. Sources: OCI image-spec v1.1
//! (`image-layout.md`, `image-index.md`, `manifest.md`, `layer.md`), moby `image/tarexport`.

mod digest;
mod error;
mod store;

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

pub use digest::{Digest, VerifyingReader};
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

/// An operating system and CPU architecture, as in an image index (`windows/amd64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Platform {
    /// The platform Windows container layers are built for.
    pub fn windows_amd64() -> Platform {
        Platform {
            os: "windows".into(),
            architecture: "amd64".into(),
        }
    }

    /// Parses `os/architecture`.
    pub fn parse(s: &str) -> Option<Platform> {
        let (os, architecture) = s.split_once('/')?;
        (!os.is_empty() && !architecture.is_empty()).then(|| Platform {
            os: os.into(),
            architecture: architecture.into(),
        })
    }

    fn matches(&self, os: &str, architecture: &str) -> bool {
        self.os.eq_ignore_ascii_case(os) && self.architecture.eq_ignore_ascii_case(architecture)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
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
    rootfs: Option<RootFs>,
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
    /// for `platform`. When no manifest names any platform at all and there is exactly one, that
    /// one is taken.
    pub fn open(path: &Path, platform: &Platform) -> Result<Image> {
        let store = Store::open(path)?;
        if store.exists("oci-layout") && store.exists("index.json") {
            open_oci(store, platform)
        } else if store.exists("manifest.json") {
            open_docker(store, platform)
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

    /// Digest of the image config, when it is content-addressed.
    pub fn config_digest(&self) -> Option<&Digest> {
        self.config_digest.as_ref()
    }

    /// Platform the config declares, when it does.
    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
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

fn open_oci(store: Store, platform: &Platform) -> Result<Image> {
    let bytes = store.read_small("index.json", JSON_LIMIT)?;
    let index: Index = parse_json(&store, "index.json", &bytes)?;
    let mut candidates = Vec::new();
    collect_manifests(&store, "index.json", index, None, 0, &mut candidates)?;

    let platform_of = |c: &Candidate| -> (String, String) {
        match &c.declared {
            Some(p) if !p.os.is_empty() => (p.os.clone(), p.architecture.clone()),
            _ => (c.config.os.clone(), c.config.architecture.clone()),
        }
    };
    let chosen = match candidates.iter().position(|c| {
        let (os, arch) = platform_of(c);
        platform.matches(&os, &arch)
    }) {
        Some(i) => i,
        None if candidates.len() == 1 && candidates.iter().all(|c| platform_of(c).0.is_empty()) => {
            0
        }
        None => {
            let available: Vec<String> = candidates
                .iter()
                .map(|c| {
                    let (os, arch) = platform_of(c);
                    if os.is_empty() {
                        format!("{} (no platform)", c.digest)
                    } else {
                        format!("{os}/{arch}")
                    }
                })
                .collect();
            return Err(Error::NoMatchingManifest {
                source_path: store.path().to_path_buf(),
                wanted: platform.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        }
    };
    let c = candidates.swap_remove(chosen);
    let manifest_member = blob_member(&c.digest);
    let diff_ids = c.config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
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
    let platform = (!c.config.os.is_empty()).then(|| Platform {
        os: c.config.os.clone(),
        architecture: c.config.architecture.clone(),
    });
    Ok(Image {
        store,
        format: Format::OciLayout,
        manifest_digest: Some(c.digest),
        config_digest: Some(c.config_digest),
        platform,
        layers,
    })
}

fn open_docker(store: Store, platform: &Platform) -> Result<Image> {
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
    for entry in &entries {
        let config_bytes = store.read_small(&entry.config, JSON_LIMIT)?;
        let config: Config = parse_json(&store, &entry.config, &config_bytes)?;
        configs.push(config);
    }
    let chosen = configs
        .iter()
        .position(|c| platform.matches(&c.os, &c.architecture))
        .or_else(|| (entries.len() == 1 && configs.iter().all(|c| c.os.is_empty())).then_some(0))
        .ok_or_else(|| Error::NoMatchingManifest {
            source_path: store.path().to_path_buf(),
            wanted: platform.to_string(),
            available: configs
                .iter()
                .map(|c| format!("{}/{}", c.os, c.architecture))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let entry = entries
        .into_iter()
        .nth(chosen)
        .ok_or_else(|| Error::Invalid {
            source_path: store.path().to_path_buf(),
            member: "manifest.json".into(),
            message: "chosen image vanished".into(),
        })?;
    let config = configs.into_iter().nth(chosen).unwrap_or_default();
    let config_digest = entry
        .config
        .strip_prefix("blobs/sha256/")
        .or_else(|| entry.config.strip_suffix(".json"))
        .and_then(|hex| Digest::from_hex(hex).ok());
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
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
    let platform = (!config.os.is_empty()).then_some(Platform {
        os: config.os,
        architecture: config.architecture,
    });
    Ok(Image {
        store,
        format: Format::DockerSave,
        manifest_digest: None,
        config_digest,
        platform,
        layers,
    })
}
