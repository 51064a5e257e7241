//! Writes seeds for the `archive` target into corpus/archive (run from crates/ociimage/fuzz:
//! `cargo run --example make_seeds`): an OCI layout tar (index -> nested index -> manifests for
//! two platforms, layers of every compression, one foreign), docker-save tars in the old layout
//! (layer.tar per v1 id, a symlinked layer) and the v25 one (blobs/sha256), each plain (mode 0)
//! and to be gzipped by the target (mode 1); OCI documents with digest placeholders for the
//! target to assemble (mode 4 and 5); and, opened asking for an OS version, documents whose index
//! and config state versions in different ways (mode 12 to 15) and docker saves whose config
//! states one (mode 8 and 9); and documents for linux/arm64 stating CPU variants, opened asking
//! for one (mode 22 and 23).

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
fn docker_old(os_version: Option<&str>) -> Vec<u8> {
    let mut a = Archive::new();
    let l0 = layer("Files/base.txt", b"base");
    let l1 = layer("Files/child.txt", b"child");
    let ids = [Digest::of(&l0).to_string(), Digest::of(&l1).to_string()];
    let mut cfg = json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": ids}});
    if let Some(v) = os_version {
        cfg["os.version"] = json!(v);
    }
    let cfg = serde_json::to_vec(&cfg).expect("json");
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
fn docker_v25(os_version: Option<&str>) -> Vec<u8> {
    let mut a = Archive::new();
    let l0 = gzip(&layer("Files/a", b"a"));
    let (d0, _) = a.blob(&l0);
    let mut cfg = json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"not the tar").to_string()]}});
    if let Some(v) = os_version {
        cfg["os.version"] = json!(v);
    }
    let (cfg, _) = a.json_blob(&cfg);
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
/// where digests and sizes go. `entries` are the index's manifest descriptors.
fn documents_with(
    entries: serde_json::Value,
    config: serde_json::Value,
    layer_media_type: &str,
    layer_blob: &[u8],
) -> Vec<u8> {
    let index = json!({"schemaVersion": 2, "manifests": entries});
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "{config}", "size": "{config-size}"},
        "layers": [{"mediaType": layer_media_type, "digest": "{layer}", "size": "{layer-size}"}]});
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

/// An index descriptor for the documents' manifest (or, with `absent`, for a manifest that is
/// not in the layout), for `os`/`arch` and, when given, an OS version.
fn entry(os: &str, arch: &str, version: Option<&str>, absent: bool) -> serde_json::Value {
    let mut platform = json!({"os": os, "architecture": arch});
    if let Some(v) = version {
        platform["os.version"] = json!(v);
    }
    let (digest, size) = if absent {
        (format!("sha256:{}", "ab".repeat(32)), json!(100))
    } else {
        ("{manifest}".to_string(), json!("{manifest-size}"))
    };
    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
        "size": size, "platform": platform})
}

/// An image config for `os`/`arch` and, when given, an OS version.
fn config(os: &str, arch: &str, version: Option<&str>) -> serde_json::Value {
    let mut c = json!({"os": os, "architecture": arch,
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"x").to_string()]}});
    if let Some(v) = version {
        c["os.version"] = json!(v);
    }
    c
}

/// Documents whose index and config state (or leave out) OS versions in the ways that the
/// platform choice treats differently: both agree, one side silent, a less specific index
/// version, a mismatch, two builds of which one manifest is absent, one manifest listed twice,
/// no platform at all, and another architecture.
fn version_cases(layer_blob: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    const V: &str = "10.0.20348.2527";
    let win = |v: Option<&str>| entry("windows", "amd64", v, false);
    let absent = |v: &str| entry("windows", "amd64", Some(v), true);
    let cases = [
        (
            "both",
            json!([win(Some(V))]),
            config("windows", "amd64", Some(V)),
        ),
        (
            "index-only",
            json!([win(Some(V))]),
            config("windows", "amd64", None),
        ),
        (
            "config-only",
            json!([win(None)]),
            config("windows", "amd64", Some(V)),
        ),
        (
            "less-specific",
            json!([win(Some("10.0.20348"))]),
            config("windows", "amd64", Some(V)),
        ),
        (
            "mismatch",
            json!([win(Some("10.0.17763.1"))]),
            config("windows", "amd64", Some(V)),
        ),
        (
            "one-absent",
            json!([win(Some(V)), absent("10.0.20348.1")]),
            config("windows", "amd64", Some(V)),
        ),
        (
            "two-builds",
            json!([absent("10.0.17763.1"), win(Some(V))]),
            config("windows", "amd64", Some(V)),
        ),
        (
            "listed-twice",
            json!([win(Some(V)), win(Some("10.0.17763.5"))]),
            config("windows", "amd64", None),
        ),
        (
            "no-platform",
            json!([{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "{manifest}", "size": "{manifest-size}"}]),
            config("", "", None),
        ),
        (
            "arm64",
            json!([
                entry("linux", "arm64", Some("10.0.20348"), false),
                absent(V)
            ]),
            config("linux", "arm64", Some("10.0.20348")),
        ),
    ];
    plain_documents(cases, layer_blob)
}

/// Seeds of (name, index entries, config) cases, each with a plain layer tar.
fn plain_documents(
    cases: impl IntoIterator<Item = (&'static str, serde_json::Value, serde_json::Value)>,
    layer_blob: &[u8],
) -> Vec<(&'static str, Vec<u8>)> {
    let layer = "application/vnd.oci.image.layer.v1.tar";
    cases
        .into_iter()
        .map(|(name, entries, cfg)| (name, documents_with(entries, cfg, layer, layer_blob)))
        .collect()
}

/// Writes `body` (a seed without its mode byte) as `<name>-<mode>` once per mode.
fn write_modes(dir: &std::path::Path, name: &str, body: &[u8], modes: &[u8]) {
    for &mode in modes {
        let mut b = vec![mode];
        b.extend_from_slice(body);
        std::fs::write(dir.join(format!("{name}-{mode}")), b).expect("write seed");
    }
}

/// `value` (an index entry's platform or a config) with a CPU variant added.
fn with_variant(mut value: serde_json::Value, variant: &str) -> serde_json::Value {
    match value.get_mut("platform") {
        Some(platform) => platform["variant"] = json!(variant),
        None => value["variant"] = json!(variant),
    }
    value
}

/// Documents whose index and config state (or leave out) CPU variants: both agree, a second
/// variant whose manifest is absent, the config alone stating one, the two disagreeing.
fn variant_cases(layer_blob: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let arm = |absent: bool| entry("linux", "arm64", None, absent);
    let cfg = || config("linux", "arm64", None);
    let cases = [
        (
            "both",
            json!([with_variant(arm(false), "v8")]),
            with_variant(cfg(), "v8"),
        ),
        (
            "one-absent",
            json!([
                with_variant(arm(false), "v8"),
                with_variant(arm(true), "v9")
            ]),
            with_variant(cfg(), "v8"),
        ),
        (
            "config-only",
            json!([arm(false)]),
            with_variant(cfg(), "v8"),
        ),
        (
            "mismatch",
            json!([with_variant(arm(false), "v8")]),
            with_variant(cfg(), "v9"),
        ),
    ];
    plain_documents(cases, layer_blob)
}

fn main() {
    let dir = std::path::Path::new("corpus/archive");
    std::fs::create_dir_all(dir).expect("corpus dir");
    let plain = layer("Files/doc.txt", b"documents");
    for (name, seed) in [
        (
            "documents-tar",
            documents_with(
                json!([entry("windows", "amd64", None, false)]),
                config("windows", "amd64", None),
                "application/vnd.oci.image.layer.v1.tar",
                &plain,
            ),
        ),
        (
            "documents-gzip",
            documents_with(
                json!([entry("windows", "amd64", None, false)]),
                config("windows", "amd64", None),
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &gzip(&plain),
            ),
        ),
    ] {
        std::fs::write(dir.join(name), &seed).expect("write seed");
        let mut gz = seed.clone();
        gz[0] |= 1;
        std::fs::write(dir.join(format!("{name}-1")), gz).expect("write seed");
    }
    for (name, bytes) in [
        ("oci", oci_layout()),
        ("docker-old", docker_old(None)),
        ("docker-v25", docker_v25(None)),
    ] {
        write_modes(dir, name, &bytes, &[0, 1]);
    }
    // Mode 12-15: documents opened asking for OS version 10.0.20348 (bit 3), gzipped (bit 0)
    // and/or for linux/arm64 (bit 1).
    for (name, seed) in version_cases(&plain) {
        write_modes(
            dir,
            &format!("version-{name}"),
            &seed[1..],
            &[12, 13, 14, 15],
        );
    }
    // Mode 22 and 23: documents for linux/arm64 opened asking for variant v8 (bits 4, 2, 1; 23
    // gzipped): variants on both sides, on the config's only, and disagreeing.
    for (name, seed) in variant_cases(&plain) {
        write_modes(dir, &format!("variant-{name}"), &seed[1..], &[22, 23]);
    }
    // Mode 8 and 9: docker saves whose config states an OS version, the asked one and another.
    for (tag, version) in [("match", "10.0.20348.2527"), ("other", "10.0.17763.1")] {
        for (name, bytes) in [
            ("docker-old", docker_old(Some(version))),
            ("docker-v25", docker_v25(Some(version))),
        ] {
            write_modes(dir, &format!("version-{name}-{tag}"), &bytes, &[8, 9]);
        }
    }
    println!("seeds written to {}", dir.display());
}
