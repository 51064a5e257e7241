//! Fuzz target: opening an image archive (OCI layout or docker save in a tar) and streaming its
//! layers. The first byte is a mode: bit 0 gzips the archive before writing it to the archive
//! file (so the compressed two-pass reader sees structured tars), bit 1 asks for linux/arm64
//! instead of windows/amd64, bit 2 builds the archive from documents (see `oci_from_documents`)
//! instead of taking the rest as the archive, bit 3 asks for OS version 10.0.20348, bit 4 for CPU
//! variant v8 (which arm64 images that state none have). The archive is written to
//! /tmp/fuzz-ociimage-<pid>/image; `Image::open` must give a typed error or an image whose every
//! layer opens or fails cleanly, and streams (up to 8 MiB each here) to its end or to an error.
#![no_main]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ociimage::{Image, Platform};

const READ_CAP: u64 = 8 << 20;

fn archive_path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/fuzz-ociimage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fuzz dir");
        dir.join("image")
    })
}

fn drain(mut r: impl Read) {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    while total < READ_CAP {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
}

/// Replaces every `{name}` in `doc` by `value`.
fn substitute(doc: &[u8], name: &str, value: &str) -> Vec<u8> {
    let pat = format!("{{{name}}}");
    let mut out = Vec::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(i) = rest.windows(pat.len()).position(|w| w == pat.as_bytes()) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(value.as_bytes());
        rest = &rest[i + pat.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// An OCI layout tar built from up to four documents separated by NUL bytes: index.json, a
/// manifest, a config and a layer blob. Digests cannot be forged by mutation, so placeholders
/// are filled in first: `{config}`, `{config-size}`, `{layer}`, `{layer-size}` in the manifest,
/// then `{manifest}` and `{manifest-size}` in the index (the other documents' digests and
/// sizes). Manifest, config and layer go into blobs/sha256 under their real digests.
fn oci_from_documents(rest: &[u8]) -> Vec<u8> {
    let mut docs = rest.splitn(4, |&b| b == 0);
    let index = docs.next().unwrap_or_default();
    let manifest = docs.next().unwrap_or_default();
    let config = docs.next().unwrap_or_default();
    let layer = docs.next().unwrap_or_default();
    let mut manifest = manifest.to_vec();
    for (name, doc) in [("config", config), ("layer", layer)] {
        let digest = ociimage::Digest::of(doc).to_string();
        manifest = substitute(&manifest, name, &digest);
        manifest = substitute(&manifest, &format!("{name}-size"), &doc.len().to_string());
    }
    let mut index = substitute(
        index,
        "manifest",
        &ociimage::Digest::of(&manifest).to_string(),
    );
    index = substitute(&index, "manifest-size", &manifest.len().to_string());
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("append");
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for doc in [&manifest[..], config, layer] {
        let member = format!("blobs/sha256/{}", ociimage::Digest::of(doc).hex());
        add(&member, doc);
    }
    b.into_inner().expect("finish tar")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let built;
    let rest = if mode & 4 == 4 {
        built = oci_from_documents(rest);
        &built[..]
    } else {
        rest
    };
    let path = archive_path();
    if mode & 1 == 1 {
        let f = std::fs::File::create(path).expect("create archive");
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(rest).expect("write archive");
        gz.finish().expect("finish archive");
    } else {
        std::fs::write(path, rest).expect("write archive");
    }
    let mut platform = if mode & 2 == 2 {
        Platform::parse("linux/arm64").expect("platform")
    } else {
        Platform::windows_amd64()
    };
    if mode & 8 == 8 {
        platform.os_version = Some("10.0.20348".into());
    }
    if mode & 16 == 16 {
        platform.variant = Some("v8".into());
    }
    let Ok(image) = Image::open(path, &platform) else {
        return;
    };
    let _ = (
        image.format(),
        image.manifest_digest(),
        image.config_digest(),
        image.platform(),
        image.os_version(),
        image.source(),
    );
    // A wanted version only matches an image that states one (or the lone platform-less one).
    if mode & 8 == 8 && image.platform().is_some() {
        assert!(image.os_version().is_some());
    }
    let count = image.layers().len();
    for (i, layer) in image.layers().iter().enumerate().take(16) {
        assert_eq!(layer.index, i);
        let _ = (layer.digest.to_string(), &layer.diff_id, layer.compression);
        if let Ok(r) = image.open_layer(i) {
            drain(r);
        }
    }
    assert!(image.open_layer(count).is_err());
});
