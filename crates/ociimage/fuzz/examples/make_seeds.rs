//! Writes seeds for the `archive` target into corpus/archive (run from crates/ociimage/fuzz:
//! `cargo run --example make_seeds`): an OCI layout tar (index -> nested index -> manifests for
//! two platforms, layers of every compression, one foreign), docker-save tars in the old layout
//! (layer.tar per v1 id, a symlinked layer) and the v25 one (blobs/sha256), each plain (mode 0)
//! and to be gzipped by the target (mode 1); and OCI documents with digest placeholders for the
//! target to assemble (mode 4 and 5).

use std::io::Write;

use ociimage::Digest;
use serde_json::json;

struct Archive {
    b: tar::Builder<Vec<u8>>,
}

impl Archive {
    fn new() -> Self {
        Archive {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn file(&mut self, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.b.append_data(&mut h, name, data).expect("append");
    }
    fn symlink(&mut self, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_cksum();
        self.b.append_link(&mut h, name, target).expect("symlink");
    }
    /// Stores `bytes` as `blobs/sha256/<hex>` and returns their descriptor fields.
    fn blob(&mut self, bytes: &[u8]) -> (String, usize) {
        let d = Digest::of(bytes);
        self.file(&format!("blobs/sha256/{}", d.hex()), bytes);
        (d.to_string(), bytes.len())
    }
    fn json_blob(&mut self, v: &serde_json::Value) -> (String, usize) {
        self.blob(&serde_json::to_vec(v).expect("json"))
    }
    fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish")
    }
}

fn layer(name: &str, body: &[u8]) -> Vec<u8> {
    let mut a = Archive::new();
    a.file(name, body);
    a.finish()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn oci_layout() -> Vec<u8> {
    let mut a = Archive::new();
    a.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let plain: Vec<Vec<u8>> = (0..2)
        .map(|i| layer(&format!("Files/f{i}.txt"), format!("layer {i}").as_bytes()))
        .collect();
    let (l0, s0) = a.blob(&gzip(&plain[0]));
    let (l1, s1) = a.blob(&plain[1]);
    let diff_ids: Vec<String> = plain.iter().map(|t| Digest::of(t).to_string()).collect();
    let (cfg, cfg_len) = a.json_blob(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}));
    let (win, win_len) = a.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_len},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
             "digest": l0, "size": s0, "urls": ["https://example.invalid/base"]},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l1, "size": s1},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
             "digest": Digest::of(b"absent").to_string(), "size": 6}]}));
    let (lcfg, lcfg_len) = a.json_blob(&json!({"os": "linux", "architecture": "arm64"}));
    let (lin, lin_len) = a.json_blob(&json!({"schemaVersion": 2,
        "config": {"digest": lcfg, "size": lcfg_len}, "layers": []}));
    let (nested, nested_len) = a.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": lin, "size": lin_len,
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": win, "size": win_len,
             "platform": {"os": "windows", "architecture": "amd64"}}]}));
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested, "size": nested_len}]});
    a.file("index.json", &serde_json::to_vec(&index).expect("json"));
    a.finish()
}

/// docker save before v25: `<id>/layer.tar`, config `<hex>.json`, a layer shared by symlink.
fn docker_old() -> Vec<u8> {
    let mut a = Archive::new();
    let l0 = layer("Files/base.txt", b"base");
    let l1 = layer("Files/child.txt", b"child");
    let ids = [Digest::of(&l0).to_string(), Digest::of(&l1).to_string()];
    let cfg = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": ids}}))
    .expect("json");
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    a.file(&cfg_name, &cfg);
    a.file("aaaa/layer.tar", &l0);
    a.file("bbbb/layer.tar", &l1);
    a.symlink("cccc/layer.tar", "../bbbb/layer.tar");
    let manifest = json!([{"Config": cfg_name, "RepoTags": ["fuzz:old"],
        "Layers": ["aaaa/layer.tar", "cccc/layer.tar"],
        "LayerSources": {ids[0].clone(): {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar",
            "size": 1, "digest": ids[0].clone(), "urls": ["https://example.invalid/x"]}}}]);
    a.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    a.finish()
}

/// docker save v25+: everything under blobs/sha256, plus an index.json that is not an OCI
/// layout's (no oci-layout file).
fn docker_v25() -> Vec<u8> {
    let mut a = Archive::new();
    let l0 = gzip(&layer("Files/a", b"a"));
    let (d0, _) = a.blob(&l0);
    let (cfg, _) = a.json_blob(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"not the tar").to_string()]}}));
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let manifest = json!([{"Config": format!("blobs/sha256/{}", hex(&cfg)),
        "Layers": [format!("blobs/sha256/{}", hex(&d0))]}]);
    a.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    a.file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
    a.finish()
}

/// Mode 4: index, manifest, config and layer separated by NUL, with the target's placeholders
/// where digests and sizes go.
fn documents(layer_media_type: &str, layer_blob: &[u8]) -> Vec<u8> {
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{manifest}",
         "size": "{manifest-size}", "platform": {"os": "windows", "architecture": "amd64"}}]});
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "{config}", "size": "{config-size}"},
        "layers": [{"mediaType": layer_media_type, "digest": "{layer}", "size": "{layer-size}"}]});
    let config = json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"x").to_string()]}});
    // Sizes are JSON numbers: drop the quotes the json! macro needs around the placeholders.
    let text = |v: &serde_json::Value| {
        v.to_string()
            .replace("\"{manifest-size}\"", "{manifest-size}")
            .replace("\"{config-size}\"", "{config-size}")
            .replace("\"{layer-size}\"", "{layer-size}")
            .into_bytes()
    };
    let mut out = vec![4u8];
    for doc in [text(&index), text(&manifest), text(&config)] {
        out.extend_from_slice(&doc);
        out.push(0);
    }
    out.extend_from_slice(layer_blob);
    out
}

fn main() {
    let dir = std::path::Path::new("corpus/archive");
    std::fs::create_dir_all(dir).expect("corpus dir");
    let plain = layer("Files/doc.txt", b"documents");
    for (name, seed) in [
        (
            "documents-tar",
            documents("application/vnd.oci.image.layer.v1.tar", &plain),
        ),
        (
            "documents-gzip",
            documents("application/vnd.oci.image.layer.v1.tar+gzip", &gzip(&plain)),
        ),
    ] {
        std::fs::write(dir.join(name), &seed).expect("write seed");
        let mut gz = seed.clone();
        gz[0] |= 1;
        std::fs::write(dir.join(format!("{name}-1")), gz).expect("write seed");
    }
    for (name, bytes) in [
        ("oci", oci_layout()),
        ("docker-old", docker_old()),
        ("docker-v25", docker_v25()),
    ] {
        for mode in [0u8, 1] {
            let mut b = vec![mode];
            b.extend_from_slice(&bytes);
            std::fs::write(dir.join(format!("{name}-{mode}")), b).expect("write seed");
        }
    }
    println!("seeds written to {}", dir.display());
}
