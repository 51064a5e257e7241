//! `cimkit import-image` and `image-layers` on an OCI layout and a docker-save archive built in
//! the test: layers become a fork chain, digests are recorded, and a second run skips them.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;
use sha2::{Digest as _, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn blob(root: &Path, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha(bytes));
    std::fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
    std::fs::write(blob_path(root, &digest), bytes).expect("blob");
    digest
}

/// Where an OCI layout keeps the blob with this `sha256:` digest.
fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn child_layer(text: &[u8]) -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("Files");
    t.file("Files/child.txt", text);
    t.whiteout("Files/.wh.big.bin");
    t.finish()
}

/// An OCI layout: index.json -> index (linux + windows) -> windows manifest with a
/// nondistributable gzip base layer and a zstd child layer.
fn oci_layout(root: &Path, child_text: &[u8]) -> Vec<String> {
    oci_layout_with(root, child_text, None)
}

/// [`oci_layout`] whose config gives the child layer `child_diff_id` (default: the right one).
fn oci_layout_with(root: &Path, child_text: &[u8], child_diff_id: Option<&str>) -> Vec<String> {
    std::fs::create_dir_all(root).expect("mkdir");
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("w");
    let base_tar = sample_base_layer();
    let child_tar = child_layer(child_text);
    let base = gzip(&base_tar);
    let child = zstd::encode_all(&child_tar[..], 3).expect("zstd");
    let d_base = blob(root, &base);
    let d_child = blob(root, &child);
    let right_child = format!("sha256:{}", sha(&child_tar));
    let config = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&base_tar)),
            child_diff_id.unwrap_or(&right_child)]}}))
    .expect("json");
    let d_config = blob(root, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d_config, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": d_base, "size": base.len(),
             "urls": ["https://example.invalid/base"]},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": d_child, "size": child.len()}
        ]})).expect("json");
    let d_manifest = blob(root, &manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d_manifest,
                       "size": manifest.len(), "platform": {"os": "windows", "architecture": "amd64"}}]})).expect("json");
    let d_index = blob(root, &index);
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d_index, "size": index.len()}]}))
        .expect("json"),
    )
    .expect("index");
    vec![d_base, d_child]
}

#[test]
fn oci_layout_imports_as_chain_and_skips_on_rerun() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = oci_layout(&layout, b"child one");
    let snaps = tmp.path().join("snaps");

    let listing = cimkit_ok(&["image-layers", s(&layout)], 0);
    assert!(
        listing.contains("(OCI image layout, windows/amd64), 2 layers")
            && listing.contains("DIGEST")
            && listing.contains("zstd")
            && listing.contains("gzip"),
        "{listing}"
    );

    let out = cimkit_ok(
        &["import-image", "-q", s(&layout), "--snapshots", s(&snaps)],
        0,
    );
    assert!(out.contains("2 imported, 0 already there"), "{out}");
    for (i, d) in digests.iter().enumerate() {
        let recorded = std::fs::read_to_string(snaps.join(format!("{}/.cimkit-digest", i + 1)))
            .expect("digest");
        assert_eq!(recorded.trim(), d);
    }
    let top = snaps.join("cim-layers/2.cim");
    assert_eq!(
        cimkit_ok(&["cat", s(&top), "Files/child.txt"], 0),
        "child one"
    );
    assert_eq!(
        cimkit_ok(&["cat", s(&top), "Files/hello.txt"], 0),
        "hello world\n"
    );
    // The whiteout removed big.bin in the child only.
    assert_eq!(
        cimkit(&["stat", s(&top), "Files/big.bin"]).status.code(),
        Some(2)
    );
    cimkit_ok(
        &["stat", s(&snaps.join("cim-layers/1.cim")), "Files/big.bin"],
        0,
    );
    cimkit_ok(&["verify", s(&top)], 0);
    let du = cimkit_ok(&["du", "--json", s(&top)], 0);
    let du: serde_json::Value = serde_json::from_str(&du).expect("json");
    assert!(
        du["parent_region_bytes"].as_u64().expect("u64") > 300_000,
        "{du}"
    );

    let again = cimkit_ok(
        &["import-image", "-q", s(&layout), "--snapshots", s(&snaps)],
        0,
    );
    assert!(again.contains("0 imported, 2 already there"), "{again}");

    // A new top layer: the base is kept, layer 2 is imported again.
    let layout2 = tmp.path().join("layout2");
    oci_layout(&layout2, b"child two");
    let third = cimkit_ok(
        &[
            "import-image",
            "-q",
            "--json",
            s(&layout2),
            "--snapshots",
            s(&snaps),
        ],
        0,
    );
    let lines: Vec<serde_json::Value> = third
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines[0]["imported"], false);
    assert_eq!(lines[1]["imported"], true);
    assert_eq!(lines[1]["replaced"], true);
    assert_eq!(
        cimkit_ok(&["cat", s(&top), "Files/child.txt"], 0),
        "child two"
    );
    // Back to the first image: the summary names the layer replaced (folder removed first).
    let fourth = cimkit_ok(
        &["import-image", "-q", s(&layout), "--snapshots", s(&snaps)],
        0,
    );
    assert!(
        fourth.contains(&format!(
            "1 imported, 1 already there; top layer {}/2 (1 layer replaced an earlier import, \
             its folder removed first: {}/2)",
            s(&snaps),
            s(&snaps)
        )),
        "{fourth}"
    );
    assert!(
        fourth.lines().any(|l| l.starts_with("layer 2/2 ")
            && l.contains(": earlier import replaced (folder removed first), imported ")),
        "{fourth}"
    );

    // destroy takes import-image's digest record with the CIM: the folder can be imported into
    let layer2 = snaps.join("2");
    cimkit_ok(&["destroy", "--layer", s(&layer2)], 0);
    assert!(!layer2.join(".cimkit-digest").exists());
    let tar = tmp.path().join("child.tar");
    std::fs::write(&tar, child_layer(b"by hand")).expect("write");
    cimkit_ok(
        &[
            "import",
            "-q",
            s(&tar),
            "--layer",
            s(&layer2),
            "--parent",
            s(&snaps.join("1")),
        ],
        0,
    );
    assert_eq!(
        cimkit_ok(&["cat", s(&top), "Files/child.txt"], 0),
        "by hand"
    );
    let layers = cimkit_ok(&["image-layers", "--json", s(&layout2)], 0);
    let first: serde_json::Value =
        serde_json::from_str(layers.lines().next().expect("line")).expect("json");
    assert_eq!(first["layer"], 1, "layers count from 1 as in DIR/<n>");
}

#[test]
fn host_snapshots_path_must_be_a_windows_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    oci_layout(&layout, b"child");
    let snaps = tmp.path().join("snaps");
    let out = cimkit(&[
        "import-image",
        "-q",
        s(&layout),
        "--snapshots",
        s(&snaps),
        "--host-snapshots-path",
        "/var/lib/containerd/snapshots",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#""/var/lib/containerd/snapshots\1" is not an absolute Windows path"#),
        "{err}"
    );
    assert!(!snaps.join("1").exists());
    let out = cimkit(&[
        "import-image",
        "-q",
        s(&layout),
        "--snapshots",
        s(&snaps),
        "--host-snapshots-path",
        r"C:\ProgramData\containerd\snapshots\",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(snaps.join("cim-layers/2.cim").is_file());
}

#[test]
fn damaged_layer_blob_fails_and_leaves_no_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = oci_layout(&layout, b"child");
    // Flip the last byte of the gzip trailer of the base layer: the tar reads fine, the gzip
    // length check and the digest do not.
    let path = blob_path(&layout, &digests[0]);
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    let snaps = tmp.path().join("snaps");
    let out = cimkit(&["import-image", "-q", s(&layout), "--snapshots", s(&snaps)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("digest mismatch")
            || err.contains("size mismatch")
            || err.contains("checksum"),
        "{err}"
    );
    assert!(!snaps.join("cim-layers/1.cim").exists());
    assert!(!snaps.join("1").exists());
}

#[test]
fn docker_save_archive_imports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = sample_base_layer();
    let child = child_layer(b"from docker");
    let config = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&base)), format!("sha256:{}", sha(&child))]}}))
    .expect("json");
    let config_name = format!("{}.json", sha(&config));
    let manifest = serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": ["demo:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]))
    .expect("json");
    let archive = tmp.path().join("demo.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).expect("create"));
    for (name, data) in [
        ("aaa/layer.tar", &base),
        ("bbb/layer.tar", &child),
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.finish().expect("finish");
    drop(b);
    let snaps = tmp.path().join("snaps");
    let out = cimkit_ok(
        &["import-image", "-q", s(&archive), "--snapshots", s(&snaps)],
        0,
    );
    assert!(out.contains("2 imported"), "{out}");
    assert_eq!(
        cimkit_ok(
            &["cat", s(&snaps.join("cim-layers/2.cim")), "Files/child.txt"],
            0
        ),
        "from docker"
    );
}

#[test]
fn foreign_layer_missing_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = oci_layout(&layout, b"child");
    std::fs::remove_file(blob_path(&layout, &digests[0])).expect("rm");
    let listing = cimkit_ok(&["image-layers", s(&layout)], 0);
    assert!(listing.contains("(not included)"), "{listing}");
    let out = cimkit(&[
        "import-image",
        "-q",
        s(&layout),
        "--snapshots",
        s(&tmp.path().join("s")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("foreign layer") && err.contains("https://example.invalid/base"),
        "{err}"
    );
    assert!(!tmp.path().join("s").exists(), "no snapshots folder left");

    // An absent top layer is found before the base is imported.
    let layout = tmp.path().join("layout2");
    let digests = oci_layout(&layout, b"child");
    std::fs::remove_file(blob_path(&layout, &digests[1])).expect("rm");
    let snaps = tmp.path().join("s2");
    let out = cimkit(&["import-image", "-q", s(&layout), "--snapshots", s(&snaps)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("layer 2/2 cannot be imported, so nothing was"),
        "{err}"
    );
    assert!(!snaps.exists(), "nothing imported: {err}");
}

/// An image in the snapshots folder that import-image did not write (no digest record) is
/// never destroyed, neither when its layer folder is missing nor when it is empty.
#[test]
fn images_not_written_by_import_image_are_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    oci_layout(&layout, b"child");
    let snaps = tmp.path().join("snaps");
    let (tar, _) = import_sample(tmp.path());
    import_tar(&tar, &snaps.join("1"), &[]);
    let cim = snaps.join("cim-layers/1.cim");
    for folder_state in ["missing", "empty"] {
        std::fs::remove_dir_all(snaps.join("1")).expect("remove the layer folder");
        if folder_state == "empty" {
            std::fs::create_dir(snaps.join("1")).expect("empty layer folder");
        }
        let out = cimkit(&["import-image", "-q", s(&layout), "--snapshots", s(&snaps)]);
        assert_eq!(out.status.code(), Some(2), "{folder_state}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not written by cimkit import-image"),
            "{folder_state}: {err}"
        );
        // How to clear the way: destroy the CIM with cimkit, then remove the folder.
        assert!(
            err.contains(&format!(
                "destroy its CIM with `cimkit destroy --layer {}`",
                s(&snaps.join("1"))
            )) && err.contains("or use another --snapshots folder"),
            "{folder_state}: {err}"
        );
        assert_eq!(
            err.contains(&format!("rm -r {}", s(&snaps.join("1")))),
            folder_state == "empty",
            "{folder_state}: {err}"
        );
        cimkit_ok(&["verify", s(&cim)], 0);
        std::fs::create_dir_all(snaps.join("1")).expect("recreate");
    }
    // A folder holding something else, and no CIM: only its removal is suggested.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("1")).expect("folder");
    std::fs::write(other.join("1/keep.txt"), b"not a layer").expect("write");
    let out = cimkit(&["import-image", "-q", s(&layout), "--snapshots", s(&other)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "(no .cimkit-digest): remove the folder (`rm -r {}`), or use another --snapshots folder",
            s(&other.join("1"))
        )),
        "{err}"
    );
}

/// An image whose manifest lists no layers is refused (it named a top layer `DIR/0`).
#[test]
fn an_image_without_layers_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("layout");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("w");
    let config =
        serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64"})).expect("json");
    let d_config = blob(&root, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d_config, "size": config.len()},
        "layers": []}))
    .expect("json");
    let d_manifest = blob(&root, &manifest);
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d_manifest,
             "size": manifest.len(), "platform": {"os": "windows", "architecture": "amd64"}}]}))
        .expect("json"),
    )
    .expect("index");
    let snaps = tmp.path().join("snaps");
    let out = cimkit(&["import-image", "-q", s(&root), "--snapshots", s(&snaps)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no layers"));
}

/// A layer whose uncompressed tar does not hash to the config's diff_id fails and leaves no
/// layer; the layers below it stay.
#[test]
fn a_wrong_diff_id_fails_the_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let wrong = format!("sha256:{}", "0".repeat(64));
    oci_layout_with(&layout, b"child", Some(&wrong));
    let snaps = tmp.path().join("snaps");
    let out = cimkit(&["import-image", "-q", s(&layout), "--snapshots", s(&snaps)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("diff_id") && err.contains(&wrong), "{err}");
    assert!(snaps.join("cim-layers/1.cim").exists());
    assert!(!snaps.join("cim-layers/2.cim").exists());
    assert!(!snaps.join("2").exists());
}

/// A base layer that says which Windows version it was built for.
fn base_for(version: &str) -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("Files").base_hives();
    t.file("Files/version.txt", version.as_bytes());
    t.finish()
}

/// An OCI layout with two windows/amd64 manifests that differ only by os.version, as MCR
/// publishes ltsc2019 and ltsc2022 builds; returns the manifest digests.
fn two_version_layout(root: &Path) -> Vec<String> {
    let platforms = ["10.0.17763.5576", "10.0.20348.2340"]
        .map(|v| json!({"os": "windows", "architecture": "amd64", "os.version": v}));
    layout_of(root, &platforms)
}

/// An OCI layout with one manifest per platform (index entry and config alike), each with a
/// base layer whose Files\version.txt holds the platform; returns the manifest digests.
fn layout_of(root: &Path, platforms: &[serde_json::Value]) -> Vec<String> {
    std::fs::create_dir_all(root).expect("mkdir");
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("w");
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for platform in platforms {
        let version = platform["os.version"]
            .as_str()
            .map_or_else(|| platform.to_string(), str::to_string);
        let tar = base_for(&version);
        let layer = gzip(&tar);
        let d_layer = blob(root, &layer);
        let mut config = platform.clone();
        config["rootfs"] = json!({"type": "layers", "diff_ids": [format!("sha256:{}", sha(&tar))]});
        let config = serde_json::to_vec(&config).expect("json");
        let d_config = blob(root, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d_config, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d_layer, "size": layer.len()}]}))
        .expect("json");
        let d_manifest = blob(root, &manifest);
        descs.push(
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d_manifest, "size": manifest.len(), "platform": platform}),
        );
        digests.push(d_manifest);
    }
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": descs})).expect("json"),
    )
    .expect("index");
    digests
}

/// Short form of a digest, as the messages print it.
fn short(digest: &str) -> &str {
    &digest[..7 + 12]
}

#[test]
fn an_ambiguous_image_names_the_options_that_pick() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = two_version_layout(&layout);
    let snaps = tmp.path().join("snaps");
    for args in [
        vec!["image-layers", s(&layout)],
        vec!["import-image", "-q", s(&layout), "--snapshots", s(&snaps)],
    ] {
        let out = cimkit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("2 manifests match windows/amd64"), "{err}");
        for (digest, build) in digests.iter().zip(["10.0.17763", "10.0.20348"]) {
            assert!(
                err.contains(&format!(
                    "--platform windows/amd64:{build} or --manifest {}",
                    short(digest)
                )),
                "{err}"
            );
        }
    }
    assert!(!snaps.exists(), "nothing imported");
}

#[test]
fn manifests_differing_by_variant_are_picked_by_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let arm64 = |variant: &str, version: &str| json!({"os": "windows", "architecture": "arm64", "variant": variant, "os.version": version});
    let digests = layout_of(
        &layout,
        &[
            arm64("v8", "10.0.26100.1"),
            arm64("v9", "10.0.26100.1"),
            arm64("v9", "10.0.20348.7"),
        ],
    );
    let out = cimkit(&["image-layers", s(&layout), "--platform", "windows/arm64"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("choose one by variant or by os.version or by digest"),
        "{err}"
    );
    for (digest, pick) in digests.iter().zip([
        "windows/arm64/v8",
        "windows/arm64/v9:10.0.26100",
        "windows/arm64:10.0.20348",
    ]) {
        assert!(
            err.contains(&format!(
                "--platform {pick} or --manifest {}",
                short(digest)
            )),
            "{err}"
        );
        let json = cimkit_ok(
            &["image-layers", "--json", s(&layout), "--platform", pick],
            0,
        );
        let line: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
        assert_eq!(line["manifest"], digest.as_str(), "{pick}");
    }
    let json = cimkit_ok(
        &[
            "image-layers",
            "--json",
            s(&layout),
            "--platform",
            "windows/arm64/v8",
        ],
        0,
    );
    let line: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(line["platform"], "windows/arm64/v8:10.0.26100.1");
}

#[test]
fn os_version_or_manifest_picks_what_is_imported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = two_version_layout(&layout);
    let snaps = tmp.path().join("snaps");
    let cim = snaps.join("cim-layers/1.cim");

    let out = cimkit_ok(
        &[
            "import-image",
            "-q",
            s(&layout),
            "--snapshots",
            s(&snaps),
            "--platform",
            "windows/amd64:10.0.20348",
        ],
        0,
    );
    assert!(
        out.contains("(windows/amd64:10.0.20348.2340): 1 layer, 1 imported"),
        "{out}"
    );
    assert_eq!(
        cimkit_ok(&["cat", s(&cim), "Files/version.txt"], 0),
        "10.0.20348.2340"
    );

    // The other manifest by digest prefix: the base layer differs, so it is imported again.
    let out = cimkit_ok(
        &[
            "import-image",
            "-q",
            "--json",
            s(&layout),
            "--snapshots",
            s(&snaps),
            "--manifest",
            short(&digests[0]),
        ],
        0,
    );
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(line["imported"], true);
    assert_eq!(line["os_version"], "10.0.17763.5576");
    assert_eq!(
        cimkit_ok(&["cat", s(&cim), "Files/version.txt"], 0),
        "10.0.17763.5576"
    );

    // image-layers: containerd's syntax, the os.version in the header and in --json.
    let listing = cimkit_ok(
        &[
            "image-layers",
            s(&layout),
            "--platform",
            "windows(10.0.17763)/amd64",
        ],
        0,
    );
    assert!(
        listing.contains(&format!(
            "(OCI image layout, windows/amd64:10.0.17763.5576), 1 layer, manifest {}",
            short(&digests[0])
        )),
        "{listing}"
    );
    let json = cimkit_ok(
        &[
            "image-layers",
            "--json",
            s(&layout),
            "--manifest",
            &format!("mcr.microsoft.com/demo:ltsc2022@{}", digests[1]),
        ],
        0,
    );
    let line: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(line["os_version"], "10.0.20348.2340");
    assert_eq!(line["manifest"], digests[1].as_str());

    // Bad values are usage errors that say what is wanted.
    for (option, value, says) in [
        ("--platform", "windows/amd64:10.0", "major.minor.build"),
        ("--manifest", "sha256:abc", "12 to 64 hex digits"),
        (
            "--platform",
            "windows:10.0.20348/amd64",
            "windows/amd64:10.0.20348 or windows(10.0.20348)/amd64",
        ),
    ] {
        let out = cimkit(&["image-layers", s(&layout), option, value]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(option) && err.contains(says), "{err}");
    }
}

/// Adds an index entry (whose blob need not exist) to the index that index.json points to.
fn list_in_nested_index(root: &Path, entry: serde_json::Value) {
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("read"))
            .expect("json");
    let inner = top["manifests"][0]["digest"].as_str().expect("digest");
    let inner_path = blob_path(root, inner);
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inner_path).expect("read")).expect("json");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(entry);
    let bytes = serde_json::to_vec(&index).expect("json");
    let d_index = blob(root, &bytes);
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d_index, "size": bytes.len()}]}))
        .expect("json"),
    )
    .expect("index");
}

/// A buildx image (provenance on) pulled and saved again: the index lists an attestation
/// manifest whose blob was never pulled. The Windows image is imported all the same.
#[test]
fn an_absent_attestation_manifest_is_no_obstacle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = oci_layout(&layout, b"child");
    let subject = {
        let top: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read"))
                .expect("json");
        top["manifests"][0]["digest"].clone()
    };
    list_in_nested_index(
        &layout,
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha(b"attestation manifest never pulled")), "size": 840,
            "annotations": {"vnd.docker.reference.digest": subject,
                            "vnd.docker.reference.type": "attestation-manifest"},
            "platform": {"architecture": "unknown", "os": "unknown"}}),
    );
    let snaps = tmp.path().join("snaps");
    let out = cimkit_ok(
        &["import-image", "-q", s(&layout), "--snapshots", s(&snaps)],
        0,
    );
    assert!(out.contains("2 imported"), "{out}");
    for (i, d) in digests.iter().enumerate() {
        let recorded = std::fs::read_to_string(snaps.join(format!("{}/.cimkit-digest", i + 1)))
            .expect("digest");
        assert_eq!(recorded.trim(), d);
    }
    assert_eq!(
        cimkit_ok(
            &["cat", s(&snaps.join("cim-layers/2.cim")), "Files/child.txt"],
            0
        ),
        "child"
    );
}

/// ltsc2019 and ltsc2022 listed, only ltsc2022 exported: `windows/amd64` alone takes the one
/// that can be read, with a note naming the absent one; asking for ltsc2019 says it is not there.
#[test]
fn a_manifest_absent_from_the_archive_is_named_not_offered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    let digests = two_version_layout(&layout);
    std::fs::remove_file(blob_path(&layout, &digests[0])).expect("rm");
    let out = cimkit(&["image-layers", s(&layout)]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cimkit: note: ")
            && err.contains(&format!(
                "also listed for windows/amd64: {} (windows/amd64, os.version 10.0.17763.5576; \
                 not in the archive); reading {} (os.version 10.0.20348.2340), which the source \
                 holds",
                short(&digests[0]),
                short(&digests[1])
            )),
        "{err}"
    );
    let snaps = tmp.path().join("snaps");

    let out = cimkit(&[
        "import-image",
        "-q",
        s(&layout),
        "--snapshots",
        s(&snaps),
        "--platform",
        "windows/amd64:10.0.17763",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the manifest for windows/amd64:10.0.17763.5576 ({}) is listed in index.json but its \
             blob is not in the archive",
            digests[0]
        )),
        "{err}"
    );
    assert!(!snaps.exists(), "nothing imported");

    let out = cimkit_ok(
        &[
            "import-image",
            "-q",
            s(&layout),
            "--snapshots",
            s(&snaps),
            "--platform",
            "windows/amd64:10.0.20348",
        ],
        0,
    );
    assert!(out.contains("1 imported"), "{out}");
    // `windows/amd64` alone finds the same (present) manifest: already imported.
    let out = cimkit_ok(
        &["import-image", "-q", s(&layout), "--snapshots", s(&snaps)],
        0,
    );
    assert!(out.contains("0 imported, 1 already there"), "{out}");
}
