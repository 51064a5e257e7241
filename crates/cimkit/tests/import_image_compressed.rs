//! `cimkit import-image` on a `docker save` archive piped through gzip or zstd: the layers are
//! streamed out of the compressed archive (no decompressed copy) and become a fork chain.

mod common;

use std::io::Write as _;

use common::*;
use serde_json::json;
use sha2::{Digest as _, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A v25+ docker-save tar (`blobs/sha256/<hex>` members) with a base layer and a child layer.
fn docker_save_tar() -> Vec<u8> {
    let base = sample_base_layer();
    let mut child = LayerTar::new();
    child.dir("Files");
    child.file("Files/child.txt", b"from a compressed archive");
    child.whiteout("Files/.wh.big.bin");
    let child = child.finish();
    let config = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&base)), format!("sha256:{}", sha(&child))]}}))
    .expect("json");
    let layers = [
        format!("blobs/sha256/{}", sha(&base)),
        format!("blobs/sha256/{}", sha(&child)),
    ];
    let config_name = format!("blobs/sha256/{}", sha(&config));
    let manifest = serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": ["demo:1"],
        "Layers": layers}]))
    .expect("json");
    let mut b = tar::Builder::new(Vec::new());
    // The child blob first: archive order is not layer order.
    for (name, data) in [
        (layers[1].as_str(), &child),
        (layers[0].as_str(), &base),
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.into_inner().expect("finish")
}

#[test]
fn gzip_and_zstd_docker_save_archives_import() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = docker_save_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    for (name, bytes) in [("img.tar.gz", gz), ("img.tar.zst", zst)] {
        let archive = tmp.path().join(name);
        std::fs::write(&archive, bytes).expect("write archive");
        let listing = cimkit_ok(&["image-layers", s(&archive)], 0);
        assert!(listing.contains("2 layers"), "{name}: {listing}");
        let snaps = tmp.path().join(format!("snaps-{name}"));
        let out = cimkit_ok(
            &["import-image", "-q", s(&archive), "--snapshots", s(&snaps)],
            0,
        );
        assert!(out.contains("2 imported"), "{name}: {out}");
        let top = snaps.join("cim-layers/2.cim");
        assert_eq!(
            cimkit_ok(&["cat", s(&top), "Files/child.txt"], 0),
            "from a compressed archive"
        );
        assert_eq!(
            cimkit_ok(&["cat", s(&top), "Files/hello.txt"], 0),
            "hello world\n"
        );
        assert_eq!(
            cimkit(&["stat", s(&top), "Files/big.bin"]).status.code(),
            Some(2)
        );
        cimkit_ok(&["verify", s(&top)], 0);
        let again = cimkit_ok(
            &["import-image", "-q", s(&archive), "--snapshots", s(&snaps)],
            0,
        );
        assert!(
            again.contains("0 imported, 2 already there"),
            "{name}: {again}"
        );
    }
}
