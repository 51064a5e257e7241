//! Image sources built in the test: OCI layouts (folder and tar, nested index, every layer
//! compression, foreign layers) and docker-save archives (old and new naming), plus damage;
//! choosing among manifests that differ only by Windows version, by version or by digest (or
//! docker's image ids); indexes listing blobs an export left out (attestations, other versions).

use std::io::{Read, Write};
use std::path::Path;

use ociimage::{Compression, Digest, DigestPrefix, Error, Format, Image, Platform, Selector};
use serde_json::json;

fn layer_tar(name: &str, body: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, body).expect("append");
    b.into_inner().expect("finish tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip finish")
}

struct Layout<'a> {
    dir: &'a Path,
}

impl Layout<'_> {
    fn blob(&self, bytes: &[u8]) -> Digest {
        let d = Digest::of(bytes);
        let dir = self.dir.join("blobs/sha256");
        std::fs::create_dir_all(&dir).expect("mkdir blobs");
        std::fs::write(dir.join(d.hex()), bytes).expect("write blob");
        d
    }
    fn json_blob(&self, v: &serde_json::Value) -> (Digest, usize) {
        let bytes = serde_json::to_vec(v).expect("json");
        (self.blob(&bytes), bytes.len())
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    layers: Vec<Vec<u8>>,
    uncompressed: Vec<Vec<u8>>,
}

/// index.json -> nested index -> {linux/amd64, windows/amd64}; the Windows manifest has a
/// nondistributable gzip base layer (with urls), a zstd layer and an uncompressed layer.
fn oci_fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("layout");
    std::fs::create_dir_all(&root).expect("mkdir");
    let l = Layout { dir: &root };
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");

    let u: Vec<Vec<u8>> = (0..3)
        .map(|i| layer_tar(&format!("Files/f{i}.txt"), format!("layer {i}").as_bytes()))
        .collect();
    let blobs = vec![
        gzip(&u[0]),
        zstd::encode_all(&u[1][..], 1).expect("zstd"),
        u[2].clone(),
    ];
    let types = [
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.v1.tar",
    ];
    let mut layer_descs = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        let d = l.blob(b);
        let mut desc = json!({"mediaType": types[i], "digest": d.to_string(), "size": b.len()});
        if i == 0 {
            desc["urls"] = json!(["https://example.invalid/base"]);
        }
        layer_descs.push(desc);
    }
    let diff_ids: Vec<String> = u.iter().map(|t| Digest::of(t).to_string()).collect();
    let (cfg, cfg_len) = l.json_blob(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}));
    let (win, win_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": cfg_len},
        "layers": layer_descs}));
    let linux_blob = gzip(&layer_tar("etc/hostname", b"x"));
    let linux_layer = l.blob(&linux_blob);
    let (lcfg, lcfg_len) = l.json_blob(&json!({"os": "linux", "architecture": "amd64"}));
    let (lin, lin_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": lcfg.to_string(), "size": lcfg_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": linux_layer.to_string(), "size": linux_blob.len()}]}));
    let (nested, nested_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": lin.to_string(), "size": lin_len,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": win.to_string(), "size": win_len,
             "platform": {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.1"}}]}));
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested.to_string(), "size": nested_len}]});
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    Fixture {
        _tmp: tmp,
        root,
        layers: blobs,
        uncompressed: u,
    }
}

fn read_layer(image: &Image, i: usize) -> std::io::Result<Vec<u8>> {
    let mut r = image.open_layer(i).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn check_oci(image: &Image, f: &Fixture) {
    assert_eq!(image.format(), Format::OciLayout);
    // os/arch from the config, os.version from the (nested) index entry.
    assert_eq!(
        image.platform(),
        Some(&Platform::parse("windows/amd64:10.0.20348.1").expect("platform"))
    );
    assert_eq!(image.os_version(), Some("10.0.20348.1"));
    let layers = image.layers();
    assert_eq!(layers.len(), 3);
    assert_eq!(
        layers.iter().map(|l| l.compression).collect::<Vec<_>>(),
        [Compression::Gzip, Compression::Zstd, Compression::None]
    );
    assert!(layers[0].foreign);
    assert_eq!(layers[0].urls, ["https://example.invalid/base"]);
    assert!(!layers[1].foreign);
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer.index, i);
        assert!(layer.present);
        assert_eq!(layer.digest, Digest::of(&f.layers[i]));
        assert_eq!(
            layer.diff_id.as_ref(),
            Some(&Digest::of(&f.uncompressed[i]))
        );
        assert_eq!(read_layer(image, i).expect("layer reads"), f.layers[i]);
    }
}

#[test]
fn oci_layout_folder_follows_nested_index_to_windows() {
    let f = oci_fixture();
    let image = Image::open(&f.root, &Platform::windows_amd64()).expect("open layout");
    check_oci(&image, &f);
    let linux =
        Image::open(&f.root, &Platform::parse("linux/amd64").expect("platform")).expect("linux");
    assert_eq!(linux.layers().len(), 1);
}

/// A layer blob of another size than its descriptor says is refused on open, in a folder and
/// in a tar, before any layer is read.
#[test]
fn a_layer_blob_of_the_wrong_size_is_refused_on_open() {
    let f = oci_fixture();
    let blob = f
        .root
        .join("blobs/sha256")
        .join(Digest::of(&f.layers[1]).hex());
    let bytes = std::fs::read(&blob).expect("read");
    std::fs::write(&blob, &bytes[..bytes.len() - 10]).expect("cut");
    let (tar_path, _) = pack_layout(&f.root);
    for source in [&f.root, &tar_path] {
        match Image::open(source, &Platform::windows_amd64()) {
            Err(Error::SizeMismatch {
                expected, actual, ..
            }) => assert_eq!(expected, actual + 10),
            other => panic!("{}: {other:?}", source.display()),
        }
    }
}

#[test]
fn oci_layout_tar_is_read_in_place() {
    let f = oci_fixture();
    let tar_path = f.root.with_extension("tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).expect("create tar"));
    b.append_dir_all(".", &f.root).expect("tar layout");
    b.finish().expect("finish");
    drop(b);
    let image = Image::open(&tar_path, &Platform::windows_amd64()).expect("open tar layout");
    check_oci(&image, &f);
}

/// An archive cut inside a member's data is called truncated when it is opened, not when that
/// member is read (for a layer, after the layers below it were imported).
#[test]
fn a_truncated_archive_is_refused_on_open() {
    let f = oci_fixture();
    let tar_path = f.root.with_extension("tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).expect("create tar"));
    b.append_dir_all(".", &f.root).expect("tar layout");
    b.finish().expect("finish");
    drop(b);
    let bytes = std::fs::read(&tar_path).expect("read");
    // Cut in the middle of the last member's data.
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).expect("open"));
    let last = archive
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry"))
        .filter(|e| e.size() > 0)
        .map(|e| (e.raw_file_position(), e.size()))
        .last()
        .expect("a member with data");
    let cut = (last.0 + last.1 / 2) as usize;
    std::fs::write(&tar_path, &bytes[..cut]).expect("cut");
    let err = Image::open(&tar_path, &Platform::windows_amd64()).expect_err("truncated");
    assert!(
        err.to_string().contains("the archive is truncated"),
        "{err}"
    );
}

#[test]
fn no_manifest_for_platform_lists_what_exists() {
    let f = oci_fixture();
    let err =
        Image::open(&f.root, &Platform::parse("windows/arm64").expect("p")).expect_err("no arm64");
    match &err {
        Error::NoMatchingManifest { available, .. } => {
            assert!(
                available.contains("linux/amd64") && available.contains("windows/amd64"),
                "{err}"
            )
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn damaged_layer_blob_fails_at_end_of_stream() {
    let f = oci_fixture();
    let blob = f
        .root
        .join("blobs/sha256")
        .join(Digest::of(&f.layers[2]).hex());
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[600] ^= 1;
    std::fs::write(&blob, &bytes).expect("write");
    let image = Image::open(&f.root, &Platform::windows_amd64()).expect("open");
    assert!(read_layer(&image, 1).is_ok());
    let err = read_layer(&image, 2).expect_err("damaged layer");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(
        err.to_string().contains(Digest::of(&f.layers[2]).hex()),
        "{err}"
    );
}

#[test]
fn damaged_manifest_is_refused_on_open() {
    let f = oci_fixture();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.root.join("index.json")).expect("read"))
            .expect("json");
    let nested =
        Digest::parse(index["manifests"][0]["digest"].as_str().expect("digest")).expect("parse");
    let path = f.root.join("blobs/sha256").join(nested.hex());
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 2;
    bytes[last] = b' ';
    std::fs::write(&path, &bytes).expect("write");
    let err = Image::open(&f.root, &Platform::windows_amd64()).expect_err("damaged index");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}

#[test]
fn missing_foreign_layer_names_its_urls() {
    let f = oci_fixture();
    std::fs::remove_file(
        f.root
            .join("blobs/sha256")
            .join(Digest::of(&f.layers[0]).hex()),
    )
    .expect("rm");
    let image = Image::open(&f.root, &Platform::windows_amd64()).expect("open");
    assert!(!image.layers()[0].present);
    let err = image.open_layer(0).expect_err("absent");
    assert!(matches!(err, Error::ForeignLayerMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("https://example.invalid/base"),
        "{err}"
    );
    // Counted from 1, as cimkit numbers layers ("layer 1/2: ...").
    assert!(err.to_string().contains(": layer 1 (sha256:"), "{err}");
}

#[test]
fn unknown_layer_media_type_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = Layout { dir: tmp.path() };
    std::fs::write(tmp.path().join("oci-layout"), "{}").expect("w");
    let layer = l.blob(b"whatever");
    let (cfg, cfg_len) = l.json_blob(&json!({"os": "windows", "architecture": "amd64"}));
    let (m, m_len) = l.json_blob(&json!({"schemaVersion": 2,
        "config": {"mediaType": "x", "digest": cfg.to_string(), "size": cfg_len},
        "layers": [{"mediaType": "application/x-squashfs", "digest": layer.to_string(), "size": 8}]}));
    let index = json!({"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m.to_string(), "size": m_len}]});
    std::fs::write(tmp.path().join("index.json"), index.to_string()).expect("w");
    let err = Image::open(tmp.path(), &Platform::windows_amd64()).expect_err("bad type");
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    assert!(err.to_string().contains(": layer 1 (sha256:"), "{err}");
}

fn append_file(b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).expect("append");
}

#[test]
fn docker_save_old_layout_with_symlinked_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("image.tar");
    let l0 = layer_tar("Files/a", b"base");
    let diff = Digest::of(&l0).to_string();
    let config = json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [diff, diff]}});
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_name = format!("{}.json", Digest::of(&config_bytes).hex());
    let manifest = json!([{"Config": config_name, "RepoTags": ["x:latest"],
        "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]}]);
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("create"));
    append_file(&mut b, "aaaa/layer.tar", &l0);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bbbb/layer.tar", "../aaaa/layer.tar")
        .expect("link");
    append_file(&mut b, &config_name, &config_bytes);
    append_file(&mut b, "manifest.json", manifest.to_string().as_bytes());
    b.finish().expect("finish");
    drop(b);

    let image = Image::open(&path, &Platform::windows_amd64()).expect("open docker save");
    assert_eq!(image.format(), Format::DockerSave);
    assert_eq!(image.layers().len(), 2);
    for i in 0..2 {
        assert_eq!(image.layers()[i].digest, Digest::of(&l0));
        assert_eq!(image.layers()[i].compression, Compression::None);
        assert_eq!(image.layers()[i].size, Some(l0.len() as u64));
        assert_eq!(read_layer(&image, i).expect("read"), l0);
    }
    assert_eq!(image.config_digest(), Some(&Digest::of(&config_bytes)));
}

#[test]
fn docker_save_blobs_layout_and_traversal_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("image.tar");
    let l0 = gzip(&layer_tar("Files/a", b"base"));
    let d0 = Digest::of(&l0);
    let config = json!({"os": "windows", "architecture": "amd64", "rootfs": {"diff_ids": []}});
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let cd = Digest::of(&config_bytes);
    let manifest = json!([{"Config": format!("blobs/sha256/{}", cd.hex()),
        "Layers": [format!("blobs/sha256/{}", d0.hex())]}]);
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("create"));
    append_file(&mut b, "manifest.json", manifest.to_string().as_bytes());
    append_file(&mut b, &format!("blobs/sha256/{}", cd.hex()), &config_bytes);
    append_file(&mut b, &format!("blobs/sha256/{}", d0.hex()), &l0);
    b.finish().expect("finish");
    drop(b);
    let image = Image::open(&path, &Platform::windows_amd64()).expect("open");
    assert_eq!(image.layers()[0].compression, Compression::Gzip);
    assert_eq!(read_layer(&image, 0).expect("read"), l0);

    // A manifest naming a file outside the archive root finds nothing.
    let dir = tmp.path().join("extracted");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("manifest.json"),
        json!([{"Config": "../../etc/passwd", "Layers": []}]).to_string(),
    )
    .expect("w");
    let err = Image::open(&dir, &Platform::windows_amd64()).expect_err("escape");
    assert!(matches!(err, Error::MissingMember { .. }), "{err}");
}

#[test]
fn unknown_source_and_unreadable_compression() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = Image::open(tmp.path(), &Platform::windows_amd64()).expect_err("empty dir");
    assert!(matches!(err, Error::UnknownFormat(_)), "{err}");
    // Gzip of something that is not a tar: an error naming the archive.
    let gz = tmp.path().join("x.tar.gz");
    std::fs::write(&gz, gzip(&[7u8; 4096])).expect("w");
    let err = Image::open(&gz, &Platform::windows_amd64()).expect_err("gz of junk");
    assert!(err.to_string().contains("x.tar.gz"), "{err}");
    // xz is recognised and refused by name (the layer importer's detection).
    let xz = tmp.path().join("x.tar.xz");
    std::fs::write(&xz, b"\xfd7zXZ\0\0\0rest").expect("w");
    let err = Image::open(&xz, &Platform::windows_amd64()).expect_err("xz");
    assert!(err.to_string().contains("xz"), "{err}");
}

/// A `docker save` archive in the v25+ layout (`blobs/sha256/<hex>`, members sorted by name as
/// docker writes them, so layers are not in image order): three layers, one larger than what
/// the first pass of a compressed archive keeps in memory, one gzip-compressed inside.
struct DockerSave {
    tar: Vec<u8>,
    blobs: Vec<Vec<u8>>,
    config: Vec<u8>,
}

fn docker_save_v25() -> DockerSave {
    // 3 MiB of incompressible-ish bytes: well over the 1 MiB kept by the first pass.
    let mut big = Vec::with_capacity(3 << 20);
    let mut x = 0x1234_5678u32;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(&x.to_le_bytes());
    }
    let blobs = vec![
        layer_tar("Files/base.bin", &big),
        gzip(&layer_tar("Files/mid.txt", b"middle layer")),
        layer_tar("Files/top.txt", b"top layer"),
    ];
    let diff_ids: Vec<String> = [
        blobs[0].clone(),
        layer_tar("Files/mid.txt", b"middle layer"),
        blobs[2].clone(),
    ]
    .iter()
    .map(|t| Digest::of(t).to_string())
    .collect();
    let config = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
    .expect("json");
    let cd = Digest::of(&config);
    let names: Vec<String> = blobs
        .iter()
        .map(|b| format!("blobs/sha256/{}", Digest::of(b).hex()))
        .collect();
    let manifest = json!([{"Config": format!("blobs/sha256/{}", cd.hex()),
        "RepoTags": ["demo:1"], "Layers": names}]);
    let mut members: Vec<(String, Vec<u8>)> =
        names.into_iter().zip(blobs.iter().cloned()).collect();
    members.push((format!("blobs/sha256/{}", cd.hex()), config.clone()));
    members.sort();
    // Make sure the archive order differs from the image order, whatever the digests are.
    let order: Vec<usize> = blobs
        .iter()
        .map(|b| {
            let name = format!("blobs/sha256/{}", Digest::of(b).hex());
            members
                .iter()
                .position(|(n, _)| *n == name)
                .expect("member")
        })
        .collect();
    if order.windows(2).all(|w| w[0] < w[1]) {
        members.reverse();
    }
    members.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    members.push((
        "index.json".into(),
        b"{\"schemaVersion\":2,\"manifests\":[]}".to_vec(),
    ));
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    DockerSave {
        tar: b.into_inner().expect("finish tar"),
        blobs,
        config,
    }
}

fn check_docker_save(image: &Image, d: &DockerSave) {
    assert_eq!(image.format(), Format::DockerSave);
    assert_eq!(image.platform(), Some(&Platform::windows_amd64()));
    assert_eq!(image.config_digest(), Some(&Digest::of(&d.config)));
    assert_eq!(
        image
            .layers()
            .iter()
            .map(|l| l.compression)
            .collect::<Vec<_>>(),
        [Compression::None, Compression::Gzip, Compression::None]
    );
    // Image order (which is not archive order), then backwards, then one layer twice.
    for i in [0, 1, 2, 2, 1, 0, 0] {
        let layer = &image.layers()[i];
        assert_eq!(layer.digest, Digest::of(&d.blobs[i]));
        assert_eq!(layer.size, Some(d.blobs[i].len() as u64));
        assert_eq!(
            read_layer(image, i).expect("layer reads"),
            d.blobs[i],
            "layer {i}"
        );
    }
    // A layer read only half-way leaves the stream mid-member; the next one still reads whole.
    let mut r = image.open_layer(0).expect("open");
    let mut half = vec![0u8; 1000];
    r.read_exact(&mut half).expect("read part");
    drop(r);
    assert_eq!(read_layer(image, 2).expect("after partial"), d.blobs[2]);
    assert_eq!(read_layer(image, 0).expect("again"), d.blobs[0]);
}

#[test]
fn docker_save_gzip_and_zstd_archives_stream() {
    let d = docker_save_v25();
    let tmp = tempfile::tempdir().expect("tempdir");
    let plain = tmp.path().join("img.tar");
    std::fs::write(&plain, &d.tar).expect("w");
    check_docker_save(
        &Image::open(&plain, &Platform::windows_amd64()).expect("plain"),
        &d,
    );

    // `docker save img | gzip`, and gzip written as several members (pigz, concatenation).
    let gz = tmp.path().join("img.tar.gz");
    std::fs::write(&gz, gzip(&d.tar)).expect("w");
    check_docker_save(
        &Image::open(&gz, &Platform::windows_amd64()).expect("gzip"),
        &d,
    );
    let (a, b) = d.tar.split_at(d.tar.len() / 3);
    let mut multi = gzip(a);
    multi.extend(gzip(b));
    let multi_path = tmp.path().join("img.multi.gz");
    std::fs::write(&multi_path, multi).expect("w");
    check_docker_save(
        &Image::open(&multi_path, &Platform::windows_amd64()).expect("multi-member gzip"),
        &d,
    );

    // The name says nothing: compression is told from the bytes.
    let zst = tmp.path().join("img.bin");
    std::fs::write(&zst, zstd::encode_all(&d.tar[..], 3).expect("zstd")).expect("w");
    check_docker_save(
        &Image::open(&zst, &Platform::windows_amd64()).expect("zstd"),
        &d,
    );
}

#[test]
fn oci_layout_tar_gz_is_streamed() {
    let f = oci_fixture();
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", &f.root).expect("tar layout");
    let tar = b.into_inner().expect("finish");
    let tmp = tempfile::tempdir().expect("tempdir");
    let gz = tmp.path().join("layout.tar.gz");
    std::fs::write(&gz, gzip(&tar)).expect("w");
    check_oci(
        &Image::open(&gz, &Platform::windows_amd64()).expect("open"),
        &f,
    );
}

/// A compressed archive is read to its very end: bytes after the gzip stream that start no
/// other member and are not zero padding, and a damaged gzip trailer (CRC of the whole
/// archive), are refused by name.
#[test]
fn compressed_archive_end_is_checked() {
    let d = docker_save_v25();
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = gzip(&d.tar);

    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"not a gzip member");
    let path = tmp.path().join("trailing.tar.gz");
    std::fs::write(&path, &trailing).expect("w");
    let err = Image::open(&path, &Platform::windows_amd64())
        .expect_err("trailing bytes refused")
        .to_string();
    assert!(err.contains("trailing.tar.gz"), "{err}");
    assert!(err.contains("trailing data"), "{err}");

    // Zero padding (block-oriented copies add it; `gzip -d` accepts it) is not trailing data;
    // bytes after the padding are.
    let mut padded = whole.clone();
    padded.resize(whole.len() + 70_000, 0);
    let path = tmp.path().join("padded.tar.gz");
    std::fs::write(&path, &padded).expect("w");
    check_docker_save(
        &Image::open(&path, &Platform::windows_amd64()).expect("zero-padded gzip archive"),
        &d,
    );
    padded.push(1);
    std::fs::write(&path, &padded).expect("w");
    let err = Image::open(&path, &Platform::windows_amd64())
        .expect_err("junk after padding refused")
        .to_string();
    assert!(err.contains("trailing data"), "{err}");

    let mut bad_crc = whole.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    let path = tmp.path().join("crc.tar.gz");
    std::fs::write(&path, &bad_crc).expect("w");
    let err = Image::open(&path, &Platform::windows_amd64())
        .expect_err("bad CRC refused")
        .to_string();
    assert!(err.contains("crc.tar.gz"), "{err}");
}

#[test]
fn damaged_compressed_archive_is_an_error_not_a_panic() {
    let d = docker_save_v25();
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = gzip(&d.tar);
    let path = tmp.path().join("cut.tar.gz");
    let mut opened = 0;
    for cut in (0..whole.len()).step_by(whole.len() / 40 + 1) {
        std::fs::write(&path, &whole[..cut]).expect("w");
        if let Ok(image) = Image::open(&path, &Platform::windows_amd64()) {
            opened += 1;
            for i in 0..image.layers().len() {
                let _ = read_layer(&image, i);
            }
        }
    }
    // The manifest is the last member: no cut archive can be opened.
    assert_eq!(opened, 0);

    // Bit flips in the compressed bytes: open fails, or some layer fails its digest or the
    // decompressor's check; never a silent wrong layer.
    for at in (20..whole.len() - 8).step_by(whole.len() / 25 + 1) {
        let mut bad = whole.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).expect("w");
        let Ok(image) = Image::open(&path, &Platform::windows_amd64()) else {
            continue;
        };
        for i in 0..image.layers().len() {
            if let Ok(bytes) = read_layer(&image, i) {
                assert_eq!(
                    bytes, d.blobs[i],
                    "flip at {at}: layer {i} read wrong bytes"
                );
            }
        }
    }
}

#[test]
fn truncated_or_mangled_documents_are_errors_not_panics() {
    let f = oci_fixture();
    let index = std::fs::read(f.root.join("index.json")).expect("read");
    for cut in 0..index.len() {
        std::fs::write(f.root.join("index.json"), &index[..cut]).expect("write");
        assert!(
            Image::open(&f.root, &Platform::windows_amd64()).is_err(),
            "cut at {cut}"
        );
    }
    for bad in [
        &br#"{"manifests": 5}"#[..],
        br#"{"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:zz"}]}"#,
        br#"{"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "md5:00"}]}"#,
        br#"[1, 2, 3]"#,
    ] {
        std::fs::write(f.root.join("index.json"), bad).expect("write");
        assert!(Image::open(&f.root, &Platform::windows_amd64()).is_err());
    }

    // A docker-save archive cut short anywhere: an error (or a shorter image), never a panic.
    std::fs::write(f.root.join("index.json"), &index).expect("restore");
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar_path = tmp.path().join("full.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).expect("create"));
    b.append_dir_all(".", &f.root).expect("tar");
    b.finish().expect("finish");
    drop(b);
    check_oci(
        &Image::open(&tar_path, &Platform::windows_amd64()).expect("whole archive"),
        &f,
    );
    let bytes = std::fs::read(&tar_path).expect("read");
    let cut_path = tmp.path().join("cut.tar");
    for cut in (0..bytes.len()).step_by(509) {
        std::fs::write(&cut_path, &bytes[..cut]).expect("write");
        if let Ok(image) = Image::open(&cut_path, &Platform::windows_amd64()) {
            for i in 0..image.layers().len() {
                let _ = read_layer(&image, i);
            }
        }
    }
}

#[test]
fn compressed_archive_past_the_kept_budget_streams_its_documents() {
    // 70 one-MiB members before the manifest and config: the first pass keeps at most 64 MiB of
    // small members, so the JSON documents are read by streaming the archive again.
    let d = docker_save_v25();
    let mut b = tar::Builder::new(Vec::new());
    let filler = vec![0u8; 1 << 20];
    for i in 0..70 {
        let mut h = tar::Header::new_ustar();
        h.set_size(filler.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("filler/{i:02}"), &filler[..])
            .expect("append");
    }
    let mut inner = tar::Archive::new(&d.tar[..]);
    for entry in inner.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut h = entry.header().clone();
        let path = entry.path().expect("path").into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        b.append_data(&mut h, path, &data[..]).expect("append");
    }
    let tar = b.into_inner().expect("finish");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("padded.tar.zst");
    std::fs::write(&path, zstd::encode_all(&tar[..], 1).expect("zstd")).expect("w");
    check_docker_save(
        &Image::open(&path, &Platform::windows_amd64()).expect("open"),
        &d,
    );
}

/// An OCI layout with one single-layer manifest per entry, listed in index.json (or in an index
/// it points to, when `nested`).
struct MultiLayout {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    manifests: Vec<Digest>,
    configs: Vec<Digest>,
    layers: Vec<Digest>,
}

impl MultiLayout {
    fn remove_blob(&self, digest: &Digest) {
        std::fs::remove_file(self.root.join("blobs/sha256").join(digest.hex())).expect("rm blob");
    }

    /// The index index.json points to (when built `nested`).
    fn nested_index(&self) -> Digest {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.root.join("index.json")).expect("read"))
                .expect("json");
        Digest::parse(index["manifests"][0]["digest"].as_str().expect("digest")).expect("digest")
    }
}

/// Each entry is the platform its index entry declares (`null` for none) and its config
/// (given `rootfs.diff_ids` for its one layer unless it has a `rootfs`).
fn multi_layout(entries: &[(serde_json::Value, serde_json::Value)], nested: bool) -> MultiLayout {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("layout");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("w");
    let l = Layout { dir: &root };
    let (mut manifests, mut configs, mut layers, mut descs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (declared, config)) in entries.iter().enumerate() {
        let tar = layer_tar("Files/which.txt", format!("manifest {i}").as_bytes());
        let layer = l.blob(&tar);
        let mut config = config.clone();
        if config.get("rootfs").is_none() {
            config["rootfs"] = json!({"type": "layers", "diff_ids": [layer.to_string()]});
        }
        let (cfg, cfg_len) = l.json_blob(&config);
        let (m, m_len) = l.json_blob(&json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": cfg_len},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": tar.len()}]}));
        let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m.to_string(), "size": m_len});
        if !declared.is_null() {
            desc["platform"] = declared.clone();
        }
        descs.push(desc);
        manifests.push(m);
        configs.push(cfg);
        layers.push(layer);
    }
    let mut index = json!({"schemaVersion": 2, "manifests": descs});
    if nested {
        let (inner, inner_len) = l.json_blob(&index);
        index = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": inner.to_string(), "size": inner_len}]});
    }
    std::fs::write(root.join("index.json"), index.to_string()).expect("index");
    MultiLayout {
        _tmp: tmp,
        root,
        manifests,
        configs,
        layers,
    }
}

fn win(version: &str) -> serde_json::Value {
    json!({"os": "windows", "architecture": "amd64", "os.version": version})
}

/// ltsc2019 and ltsc2022 builds of one image, plus a linux one, as MCR publishes them.
fn two_windows_versions(nested: bool) -> MultiLayout {
    let config = json!({"os": "windows", "architecture": "amd64"});
    multi_layout(
        &[
            (win("10.0.17763.5576"), config.clone()),
            (win("10.0.20348.2340"), config),
            (
                json!({"os": "linux", "architecture": "amd64"}),
                json!({"os": "linux", "architecture": "amd64"}),
            ),
        ],
        nested,
    )
}

fn open(root: &Path, platform: &str) -> ociimage::Result<Image> {
    Image::open(root, &Platform::parse(platform).expect(platform))
}

fn open_digest(root: &Path, platform: &str, digest: &str) -> ociimage::Result<Image> {
    let selector = Selector {
        platform: Platform::parse(platform).expect(platform),
        digest: Some(DigestPrefix::parse(digest).expect(digest)),
    };
    Image::open_with(root, &selector)
}

#[test]
fn manifests_differing_by_os_version_are_ambiguous() {
    for nested in [false, true] {
        let m = two_windows_versions(nested);
        let err = open(&m.root, "windows/amd64").expect_err("two windows/amd64 manifests");
        match &err {
            Error::AmbiguousManifest {
                wanted, candidates, ..
            } => {
                assert_eq!(wanted, "windows/amd64");
                assert_eq!(
                    candidates.iter().map(|c| &c.digest).collect::<Vec<_>>(),
                    [&m.manifests[0], &m.manifests[1]]
                );
            }
            other => panic!("unexpected {other}"),
        }
        let text = err.to_string();
        for (digest, version) in [
            (&m.manifests[0], "10.0.17763.5576"),
            (&m.manifests[1], "10.0.20348.2340"),
        ] {
            assert!(
                text.contains(&format!(
                    "{} (windows/amd64, os.version {version})",
                    digest.short()
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("choose one by os.version or by digest"),
            "{text}"
        );
        // linux/amd64 is still one manifest.
        let linux = open(&m.root, "linux/amd64").expect("linux");
        assert_eq!(linux.layers()[0].digest, m.layers[2]);
    }
}

#[test]
fn os_version_picks_the_manifest() {
    for nested in [false, true] {
        let m = two_windows_versions(nested);
        for (platform, which) in [
            ("windows/amd64:10.0.20348", 1),
            ("windows/amd64:10.0.20348.2340", 1),
            ("windows(10.0.20348)/amd64", 1),
            ("windows/amd64:10.0.17763", 0),
            ("windows(10.0.17763.5576)/amd64", 0),
        ] {
            let image = open(&m.root, platform).expect(platform);
            assert_eq!(
                image.manifest_digest(),
                Some(&m.manifests[which]),
                "{platform}"
            );
            assert_eq!(image.layers().len(), 1);
            assert_eq!(image.layers()[0].digest, m.layers[which], "{platform}");
            let expected = ["10.0.17763.5576", "10.0.20348.2340"][which];
            assert_eq!(image.os_version(), Some(expected));
        }
        // A revision that is not there, or a build no manifest has: the available ones listed.
        for platform in ["windows/amd64:10.0.20348.2341", "windows/amd64:10.0.26100"] {
            let err = open(&m.root, platform).expect_err(platform);
            assert!(
                matches!(&err, Error::NoMatchingManifest { available, .. }
                    if available.contains("windows/amd64:10.0.17763.5576")
                        && available.contains("windows/amd64:10.0.20348.2340")),
                "{err}"
            );
        }
    }
}

#[test]
fn os_version_comes_from_the_config_when_the_index_has_none() {
    let declared = json!({"os": "windows", "architecture": "amd64"});
    let m = multi_layout(
        &[
            (declared.clone(), win("10.0.17763.5576")),
            (declared, win("10.0.26100.1742")),
            // No platform in the index at all: the config's is used.
            (serde_json::Value::Null, win("10.0.20348.2340")),
        ],
        false,
    );
    assert!(matches!(
        open(&m.root, "windows/amd64"),
        Err(Error::AmbiguousManifest { ref candidates, .. }) if candidates.len() == 3
    ));
    for (platform, which, version) in [
        ("windows/amd64:10.0.26100", 1, "10.0.26100.1742"),
        ("windows/amd64:10.0.20348", 2, "10.0.20348.2340"),
    ] {
        let image = open(&m.root, platform).expect(platform);
        assert_eq!(image.layers()[0].digest, m.layers[which]);
        assert_eq!(image.os_version(), Some(version));
    }
}

#[test]
fn one_manifest_listed_twice_is_not_ambiguous() {
    let m = two_windows_versions(false);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.root.join("index.json")).expect("read"))
            .expect("json");
    let first = index["manifests"][0].clone();
    let twice = json!({"schemaVersion": 2, "manifests": [first.clone(), first]});
    std::fs::write(m.root.join("index.json"), twice.to_string()).expect("w");
    let image = open(&m.root, "windows/amd64").expect("same digest twice");
    assert_eq!(image.manifest_digest(), Some(&m.manifests[0]));
}

#[test]
fn manifest_digest_picks_the_manifest() {
    let m = two_windows_versions(true);
    let full = m.manifests[1].to_string();
    let short = m.manifests[1].short();
    let bare = &m.manifests[1].hex()[..16];
    for digest in [full.as_str(), short.as_str(), bare] {
        let image = open_digest(&m.root, "windows/amd64", digest).expect(digest);
        assert_eq!(image.manifest_digest(), Some(&m.manifests[1]), "{digest}");
        assert_eq!(image.layers()[0].digest, m.layers[1]);
        assert_eq!(image.os_version(), Some("10.0.20348.2340"));
    }
    // The version, when given too, must agree.
    open_digest(&m.root, "windows/amd64:10.0.20348", &short).expect("agrees");
    let err = open_digest(&m.root, "windows/amd64:10.0.17763", &short).expect_err("disagrees");
    assert!(matches!(err, Error::ManifestNotForPlatform { .. }), "{err}");
    assert!(
        err.to_string().contains("windows/amd64:10.0.20348.2340"),
        "{err}"
    );
    // So must os/arch: the linux manifest is not windows/amd64.
    let linux = m.manifests[2].short();
    let err = open_digest(&m.root, "windows/amd64", &linux).expect_err("linux");
    assert!(
        err.to_string()
            .contains("is for linux/amd64, not windows/amd64"),
        "{err}"
    );
    open_digest(&m.root, "linux/amd64", &linux).expect("linux by digest");
    // A digest that names nothing lists what is there.
    let err = open_digest(&m.root, "windows/amd64", &"0".repeat(12)).expect_err("unknown");
    assert!(
        matches!(&err, Error::NoSuchManifest { available, .. }
            if available.contains(&m.manifests[0].short())),
        "{err}"
    );
    // Fewer than 12 hex digits is refused when parsed. (A prefix naming two manifests needs two
    // digests sharing 12 hex digits; the unit tests of the choice cover it.)
    assert!(matches!(
        DigestPrefix::parse(&m.manifests[1].hex()[..11]),
        Err(Error::BadDigestPrefix { .. })
    ));
}

#[test]
fn index_platform_must_agree_with_the_config() {
    for (config, says) in [
        (
            json!({"os": "linux", "architecture": "amd64"}),
            "linux/amd64",
        ),
        (
            json!({"os": "windows", "architecture": "arm64"}),
            "windows/arm64",
        ),
        (win("10.0.17763.5576"), "windows/amd64:10.0.17763.5576"),
    ] {
        let m = multi_layout(&[(win("10.0.20348.2340"), config)], false);
        let err = open(&m.root, "windows/amd64").expect_err(says);
        match &err {
            Error::PlatformMismatch {
                manifest,
                declared,
                config,
                ..
            } => {
                assert_eq!(manifest, &m.manifests[0].to_string());
                assert_eq!(declared, "windows/amd64:10.0.20348.2340");
                assert_eq!(config, says);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("the index says"), "{err}");
    }
    // Case differences and a config that leaves the version out are not disagreements.
    let m = multi_layout(
        &[(
            win("10.0.20348.2340"),
            json!({"os": "Windows", "architecture": "AMD64"}),
        )],
        false,
    );
    open(&m.root, "windows/amd64").expect("agrees");
}

#[test]
fn variants_choose_among_manifests_of_one_architecture() {
    let arm = |variant: &str| json!({"os": "linux", "architecture": "arm", "variant": variant});
    let m = multi_layout(
        &[
            (arm("v6"), json!({"os": "linux", "architecture": "arm"})),
            (arm("v7"), arm("v7")),
            // The variant stated by the config only.
            (
                json!({"os": "windows", "architecture": "arm64"}),
                json!({"os": "windows", "architecture": "arm64", "variant": "v8"}),
            ),
        ],
        false,
    );
    let err = open(&m.root, "linux/arm").expect_err("two arm variants");
    let text = err.to_string();
    assert!(matches!(err, Error::AmbiguousManifest { .. }), "{text}");
    for (digest, variant) in [(&m.manifests[0], "v6"), (&m.manifests[1], "v7")] {
        assert!(
            text.contains(&format!(
                "{} (linux/arm/{variant}, no os.version)",
                digest.short()
            )),
            "{text}"
        );
    }
    assert!(
        text.ends_with("choose one by variant or by digest"),
        "{text}"
    );
    for (platform, which) in [
        ("linux/arm/v6", 0),
        ("linux/arm/V7", 1),
        ("windows/arm64/v8", 2),
        ("windows/arm64", 2),
    ] {
        let image = open(&m.root, platform).expect(platform);
        assert_eq!(
            image.manifest_digest(),
            Some(&m.manifests[which]),
            "{platform}"
        );
    }
    let arm64 = open(&m.root, "windows/arm64").expect("arm64");
    assert_eq!(
        arm64.platform().and_then(|p| p.variant.as_deref()),
        Some("v8")
    );
    let err = open(&m.root, "linux/arm/v5").expect_err("no v5");
    assert!(matches!(err, Error::NoMatchingManifest { .. }), "{err}");

    // arm64 stating no variant is v8: two such manifests differ by nothing --platform can name.
    let arm64 = |variant: Option<&str>| {
        let mut p = json!({"os": "linux", "architecture": "arm64"});
        if let Some(v) = variant {
            p["variant"] = json!(v);
        }
        p
    };
    let m = multi_layout(
        &[
            (arm64(None), arm64(None)),
            (arm64(Some("v8")), arm64(Some("v8"))),
        ],
        false,
    );
    let err = open(&m.root, "linux/arm64").expect_err("both v8");
    assert!(err.to_string().ends_with("; choose one by digest"), "{err}");

    // An index entry and its config that state different variants disagree.
    let m = multi_layout(&[(arm("v6"), arm("v7"))], false);
    match open(&m.root, "linux/arm").expect_err("v6 vs v7") {
        Error::PlatformMismatch {
            declared, config, ..
        } => assert_eq!(
            (declared.as_str(), config.as_str()),
            ("linux/arm/v6", "linux/arm/v7")
        ),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn diff_ids_must_pair_up_with_layers() {
    let m = multi_layout(
        &[(
            win("10.0.20348.2340"),
            json!({"os": "windows", "architecture": "amd64", "rootfs": {"type": "layers",
                "diff_ids": [Digest::of(b"a").to_string(), Digest::of(b"b").to_string()]}}),
        )],
        false,
    );
    let err = open(&m.root, "windows/amd64").expect_err("2 diff_ids, 1 layer");
    assert!(
        matches!(
            err,
            Error::DiffIdCount {
                layers: 1,
                diff_ids: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("blobs/sha256/"), "{err}");

    // The same in a docker-save archive (3 diff_ids for 2 layers).
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("image.tar");
    let l0 = layer_tar("Files/a", b"base");
    let diff = Digest::of(&l0).to_string();
    let config = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [diff, diff, diff]}}))
    .expect("json");
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = json!([{"Config": config_name, "Layers": ["a/layer.tar", "b/layer.tar"]}]);
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("create"));
    append_file(&mut b, "a/layer.tar", &l0);
    append_file(&mut b, "b/layer.tar", &l0);
    append_file(&mut b, &config_name, &config);
    append_file(&mut b, "manifest.json", manifest.to_string().as_bytes());
    b.finish().expect("finish");
    drop(b);
    let err = Image::open(&path, &Platform::windows_amd64()).expect_err("3 diff_ids, 2 layers");
    assert!(
        matches!(
            err,
            Error::DiffIdCount {
                layers: 2,
                diff_ids: 3,
                ..
            }
        ),
        "{err}"
    );
}

/// A `docker save` of two images (v25+ naming): the same windows/amd64 image built for ltsc2019
/// and ltsc2022. The image id (config digest) picks one.
#[test]
fn docker_save_of_two_versions_is_ambiguous_until_one_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("two.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("create"));
    let mut entries = Vec::new();
    let mut ids = Vec::new();
    let mut layers = Vec::new();
    for (i, version) in ["10.0.17763.5576", "10.0.20348.2340"].iter().enumerate() {
        let layer = layer_tar("Files/which.txt", format!("image {i}").as_bytes());
        let ld = Digest::of(&layer);
        let mut config = win(version);
        config["rootfs"] = json!({"type": "layers", "diff_ids": [ld.to_string()]});
        let config = serde_json::to_vec(&config).expect("json");
        let cd = Digest::of(&config);
        append_file(&mut b, &format!("blobs/sha256/{}", ld.hex()), &layer);
        append_file(&mut b, &format!("blobs/sha256/{}", cd.hex()), &config);
        entries.push(json!({"Config": format!("blobs/sha256/{}", cd.hex()),
            "RepoTags": [format!("demo:{i}")], "Layers": [format!("blobs/sha256/{}", ld.hex())]}));
        ids.push(cd);
        layers.push(ld);
    }
    append_file(
        &mut b,
        "manifest.json",
        serde_json::Value::Array(entries).to_string().as_bytes(),
    );
    b.finish().expect("finish");
    drop(b);

    let err = Image::open(&path, &Platform::windows_amd64()).expect_err("two images");
    assert!(
        matches!(&err, Error::AmbiguousManifest { candidates, .. } if candidates.len() == 2),
        "{err}"
    );
    assert!(err.to_string().contains(&ids[1].short()), "{err}");
    let image = open(&path, "windows/amd64:10.0.20348").expect("by version");
    assert_eq!(image.layers()[0].digest, layers[1]);
    assert_eq!(image.os_version(), Some("10.0.20348.2340"));
    let image = open_digest(&path, "windows/amd64", &ids[0].short()).expect("by image id");
    assert_eq!(image.config_digest(), Some(&ids[0]));
    assert_eq!(image.layers()[0].digest, layers[0]);
}

/// A buildkit attestation manifest for `subject` (an in-toto layer, an unknown/unknown config),
/// written into the layout; returns its index entry.
fn attestation(l: &Layout, subject: &Digest) -> serde_json::Value {
    let statement = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#;
    let d_statement = l.blob(statement);
    let (cfg, cfg_len) = l.json_blob(&json!({"architecture": "unknown", "os": "unknown",
        "rootfs": {"type": "layers", "diff_ids": [d_statement.to_string()]}}));
    let (m, m_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": cfg_len},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": d_statement.to_string(),
            "size": statement.len()}]}));
    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.to_string(), "size": m_len,
        "annotations": {"vnd.docker.reference.digest": subject.to_string(),
                        "vnd.docker.reference.type": "attestation-manifest"},
        "platform": {"architecture": "unknown", "os": "unknown"}})
}

/// buildx (provenance on by default) lists an attestation manifest beside the image; a docker
/// or containerd pull leaves its blob out and `docker save` keeps the index entry. Present or
/// absent, it is never a candidate: not counted, not listed, not nameable.
#[test]
fn attestation_manifests_are_not_images() {
    let m = multi_layout(&[(win("10.0.20348.2340"), win("10.0.20348.2340"))], true);
    let l = Layout { dir: &m.root };
    let entry = attestation(&l, &m.manifests[0]);
    let att = Digest::parse(entry["digest"].as_str().expect("digest")).expect("digest");
    let inner = m.nested_index();
    let mut index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(m.root.join("blobs/sha256").join(inner.hex())).expect("read"),
    )
    .expect("json");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(entry);
    let (inner, inner_len) = l.json_blob(&index);
    std::fs::write(
        m.root.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": inner.to_string(), "size": inner_len}]})
        .to_string(),
    )
    .expect("index");
    for absent in [false, true] {
        if absent {
            m.remove_blob(&att);
        }
        let image = open(&m.root, "windows/amd64").expect("the image");
        assert_eq!(image.manifest_digest(), Some(&m.manifests[0]), "{absent}");
        let err = open(&m.root, "windows/arm64").expect_err("no arm64");
        assert!(
            matches!(&err, Error::NoMatchingManifest { available, .. }
                if available == "windows/amd64:10.0.20348.2340"),
            "{err}"
        );
        let err = open_digest(&m.root, "windows/amd64", &att.short()).expect_err("attestation");
        assert!(
            matches!(&err, Error::NoSuchManifest { available, .. }
                if !available.contains(&att.short())),
            "{err}"
        );
    }
}

/// An MCR-style image pulled for one Windows version and exported: the index still lists the
/// other version, whose manifest blob is absent. The present one is chosen (by version, by
/// digest, or by `windows/amd64` alone, which notes the absent one), and choosing the absent one
/// says what is missing.
#[test]
fn manifests_missing_from_the_archive_fail_only_when_chosen() {
    for nested in [false, true] {
        let m = two_windows_versions(nested);
        m.remove_blob(&m.manifests[0]);
        let image = open(&m.root, "windows/amd64:10.0.20348").expect("present by version");
        assert_eq!(image.manifest_digest(), Some(&m.manifests[1]));
        let image = open_digest(&m.root, "windows/amd64", &m.manifests[1].short())
            .expect("present by digest");
        assert_eq!(image.layers()[0].digest, m.layers[1]);
        open(&m.root, "linux/amd64").expect("linux");

        // `windows/amd64` alone: the one manifest the archive holds is taken, and the image
        // says which listed ones were passed over for being absent.
        let image = open(&m.root, "windows/amd64").expect("the present one");
        assert_eq!(image.manifest_digest(), Some(&m.manifests[1]));
        let passed_over: Vec<_> = image
            .absent_alternatives()
            .iter()
            .map(|c| c.digest.clone())
            .collect();
        assert_eq!(passed_over, [m.manifests[0].clone()]);
        assert!(open(&m.root, "windows/amd64:10.0.20348")
            .expect("by version")
            .absent_alternatives()
            .is_empty());

        let listed_in = if nested {
            format!("index {}", m.nested_index())
        } else {
            "index.json".to_string()
        };
        let by_version = open(&m.root, "windows/amd64:10.0.17763").expect_err("absent");
        let by_digest =
            open_digest(&m.root, "windows/amd64", &m.manifests[0].short()).expect_err("absent");
        for err in [by_version, by_digest] {
            assert!(
                matches!(err, Error::ManifestNotInArchive { index: false, .. }),
                "{err}"
            );
            assert!(
                err.to_string().ends_with(&format!(
                    ": the manifest for windows/amd64:10.0.17763.5576 ({}) is listed in \
                     {listed_in} but its blob is not in the archive (exported for one platform \
                     only?)",
                    m.manifests[0]
                )),
                "{err}"
            );
        }
    }

    // A config blob missing for a manifest that is not chosen is no error either; when chosen it is.
    let m = two_windows_versions(false);
    m.remove_blob(&m.configs[0]);
    open(&m.root, "windows/amd64:10.0.20348").expect("the other one");
    let err = open(&m.root, "windows/amd64:10.0.17763").expect_err("its config is absent");
    assert!(
        matches!(&err, Error::MissingMember { member, .. }
            if *member == format!("blobs/sha256/{}", m.configs[0].hex())),
        "{err}"
    );

    // The one index index.json names is absent: no platform is known, so it is the choice.
    let m = two_windows_versions(true);
    let inner = m.nested_index();
    m.remove_blob(&inner);
    let err = open(&m.root, "windows/amd64").expect_err("nothing to read");
    assert!(
        matches!(err, Error::ManifestNotInArchive { index: true, .. })
            && err.to_string().contains(&format!(
                "the image index {inner} is listed in index.json but its blob is not in the archive"
            )),
        "{err}"
    );
}

/// `docker save` 25+ writes an OCI layout (index entries without a platform) plus manifest.json;
/// the IMAGE ID `docker images` shows is the config digest, and with the containerd image store
/// it is the digest of the image index. Either names the image; a reference's digest works too.
#[test]
fn image_ids_of_docker_save_name_the_manifest() {
    let declared = serde_json::Value::Null;
    let m = multi_layout(
        &[
            (declared.clone(), win("10.0.17763.5576")),
            (declared, win("10.0.20348.2340")),
        ],
        false,
    );
    let entries: Vec<serde_json::Value> = m
        .configs
        .iter()
        .zip(&m.layers)
        .map(|(c, l)| {
            json!({"Config": format!("blobs/sha256/{}", c.hex()),
                "Layers": [format!("blobs/sha256/{}", l.hex())]})
        })
        .collect();
    std::fs::write(
        m.root.join("manifest.json"),
        serde_json::Value::Array(entries).to_string(),
    )
    .expect("manifest.json");
    assert!(matches!(
        open(&m.root, "windows/amd64"),
        Err(Error::AmbiguousManifest { .. })
    ));
    for (i, config) in m.configs.iter().enumerate() {
        let image = open_digest(&m.root, "windows/amd64", &config.short()).expect("image id");
        assert_eq!(image.format(), Format::OciLayout);
        assert_eq!(image.manifest_digest(), Some(&m.manifests[i]));
        assert_eq!(image.config_digest(), Some(config));
    }
    let reference = format!("docker.io/library/demo:1@{}", m.manifests[1]);
    let image = open_digest(&m.root, "windows/amd64", &reference).expect("reference");
    assert_eq!(image.manifest_digest(), Some(&m.manifests[1]));

    // The containerd store's id: the image index; --platform chooses among what it lists.
    let m = two_windows_versions(true);
    let id = m.nested_index().short();
    let err = open_digest(&m.root, "windows/amd64", &id).expect_err("two versions");
    assert!(
        matches!(&err, Error::AmbiguousManifest { candidates, .. } if candidates.len() == 2),
        "{err}"
    );
    for (platform, which) in [("windows/amd64:10.0.20348", 1), ("linux/amd64", 2)] {
        let image = open_digest(&m.root, platform, &id).expect(platform);
        assert_eq!(image.manifest_digest(), Some(&m.manifests[which]));
    }
}

/// An index entry stating major.minor.build (`docker manifest annotate --os-version`) and a
/// config with the revision too describe one OS; the revision is what `--platform` matches.
#[test]
fn an_os_version_and_its_revision_agree() {
    for (declared, config) in [
        ("10.0.17763", "10.0.17763.5576"),
        ("10.0.17763.5576", "10.0.17763"),
    ] {
        let m = multi_layout(&[(win(declared), win(config))], false);
        let image = open(&m.root, "windows/amd64").expect("agree");
        assert_eq!(image.os_version(), Some("10.0.17763.5576"));
        open(&m.root, "windows/amd64:10.0.17763.5576").expect("the revision matches");
    }
    let m = multi_layout(&[(win("10.0.17763"), win("10.0.20348.2340"))], false);
    assert!(matches!(
        open(&m.root, "windows/amd64"),
        Err(Error::PlatformMismatch { .. })
    ));
}

/// A `docker save` 25+ of an image whose first layer is foreign: the OCI manifest keeps the
/// registry's descriptor (compressed digest, urls; the blob is absent), while manifest.json names
/// the files saved for the layers.
struct ForeignSave {
    config: Vec<u8>,
    cd: Digest,
    manifest: Vec<u8>,
    md: Digest,
}

impl ForeignSave {
    /// `registry` is the foreign layer's blob as published; `top`, if given, a second, ordinary
    /// layer (an uncompressed tar).
    fn new(base_id: &Digest, registry: &[u8], top: Option<&[u8]>) -> ForeignSave {
        let mut diff_ids = vec![base_id.to_string()];
        let mut layers = vec![json!({
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": Digest::of(registry).to_string(), "size": registry.len(),
            "urls": ["https://example.invalid/base"]})];
        if let Some(top) = top {
            diff_ids.push(Digest::of(top).to_string());
            layers.push(
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": Digest::of(top).to_string(), "size": top.len()}),
            );
        }
        let config = serde_json::to_vec(&json!({"os": "windows", "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
        .expect("json");
        let cd = Digest::of(&config);
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
            "layers": layers}))
        .expect("json");
        let md = Digest::of(&manifest);
        ForeignSave {
            config,
            cd,
            manifest,
            md,
        }
    }

    /// Writes the archive at `path` holding `files` (each under its own digest) and a
    /// manifest.json whose Layers name `saved`.
    fn write(&self, path: &Path, files: &[&[u8]], saved: &[&Digest]) {
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.md.to_string(), "size": self.manifest.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/demo:1"}}]});
        let entries = json!([{"Config": blob(&self.cd), "RepoTags": ["demo:1"],
            "Layers": saved.iter().map(|d| blob(d)).collect::<Vec<_>>()}]);
        let mut b = tar::Builder::new(std::fs::File::create(path).expect("create"));
        for f in files {
            append_file(&mut b, &blob(&Digest::of(f)), f);
        }
        append_file(&mut b, &blob(&self.cd), &self.config);
        append_file(&mut b, &blob(&self.md), &self.manifest);
        append_file(&mut b, "index.json", index.to_string().as_bytes());
        append_file(&mut b, "manifest.json", entries.to_string().as_bytes());
        append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        b.finish().expect("finish");
    }
}

/// `docker save` 25+ of an image with a foreign base layer: the OCI manifest keeps the
/// registry's descriptor (compressed digest, urls), while the archive holds the uncompressed tar
/// at blobs/sha256/<diff_id>, which manifest.json names. That file is the layer.
#[test]
fn docker_save_of_a_foreign_layer_reads_the_saved_tar() {
    let base = layer_tar("Files/base.txt", b"foreign base");
    let top = layer_tar("Files/top.txt", b"top");
    let registry_blob = gzip(&base);
    let base_id = Digest::of(&base);
    let top_id = Digest::of(&top);
    let save = ForeignSave::new(&base_id, &registry_blob, Some(&top));
    let write = |path: &Path, saved: &[&Digest]| save.write(path, &[&base, &top], saved);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("save.tar");
    write(&path, &[&base_id, &top_id]);
    let image = Image::open(&path, &Platform::windows_amd64()).expect("open");
    assert_eq!(image.format(), Format::OciLayout);
    let layer = &image.layers()[0];
    assert!(layer.present && layer.foreign, "{layer:?}");
    assert_eq!(layer.digest, base_id);
    assert_eq!(layer.diff_id.as_ref(), Some(&base_id));
    assert_eq!(layer.compression, Compression::None);
    assert_eq!(layer.size, Some(base.len() as u64));
    assert_eq!(layer.urls, ["https://example.invalid/base"]);
    assert_eq!(read_layer(&image, 0).expect("saved tar"), base);
    assert_eq!(read_layer(&image, 1).expect("top"), top);

    // manifest.json naming a file that is not the layer: its digest check fails at the end.
    write(&path, &[&top_id, &top_id]);
    let image = Image::open(&path, &Platform::windows_amd64()).expect("open");
    let err = read_layer(&image, 0).expect_err("not the base layer");
    assert!(err.to_string().contains("digest mismatch"), "{err}");

    // A compressed saved file is checked against the digest its name states.
    let recompressed = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&base).expect("gzip");
        e.finish().expect("gzip finish")
    };
    assert_ne!(recompressed, registry_blob);
    let gz_id = Digest::of(&recompressed);
    let gz_path = tmp.path().join("save-gz.tar");
    save.write(&gz_path, &[&recompressed, &top], &[&gz_id, &top_id]);
    let image = Image::open(&gz_path, &Platform::windows_amd64()).expect("open");
    let layer = &image.layers()[0];
    assert_eq!(layer.digest, gz_id);
    assert_eq!(layer.compression, Compression::Gzip);
    assert_eq!(read_layer(&image, 0).expect("saved gzip"), recompressed);

    // Without manifest.json's help the foreign layer is missing, as before.
    write(&path, &[]);
    let image = Image::open(&path, &Platform::windows_amd64()).expect("open");
    assert!(!image.layers()[0].present);
    assert!(matches!(
        image.open_layer(0),
        Err(Error::ForeignLayerMissing { .. })
    ));
}

// Choosing on exports that lack blobs, hostile indexes and docker-save fallbacks.

fn write_index(root: &Path, index: &serde_json::Value) {
    std::fs::write(root.join("index.json"), index.to_string()).expect("index.json");
}

fn read_index(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("read")).expect("json")
}

/// Packs a layout folder as a tar and as a tar.gz next to it.
fn pack_layout(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let tar_path = root.with_extension("tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).expect("create tar"));
    b.append_dir_all(".", root).expect("tar layout");
    b.finish().expect("finish");
    drop(b);
    let gz_path = root.with_extension("tar.gz");
    std::fs::write(&gz_path, gzip(&std::fs::read(&tar_path).expect("read tar"))).expect("w");
    (tar_path, gz_path)
}

/// What `image` reports as passed over, as text.
fn passed_over(image: &Image) -> Vec<String> {
    image
        .absent_alternatives()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A manifest named outright (by its digest or its config digest, the docker IMAGE ID) was not
/// chosen by platform: no absent entry is reported as passed over.
#[test]
fn a_named_manifest_passes_nothing_over() {
    let m = two_windows_versions(false);
    m.remove_blob(&m.manifests[0]);
    for digest in [m.manifests[1].short(), m.configs[1].short()] {
        let image = open_digest(&m.root, "windows/amd64", &digest).expect("named, present");
        assert_eq!(image.manifest_digest(), Some(&m.manifests[1]));
        let passed = passed_over(&image);
        assert!(passed.is_empty(), "--manifest {digest}: {passed:?}");
    }
}

/// `--manifest <index digest>`: absent manifests listed under another index are not reported
/// as passed over.
#[test]
fn an_index_digest_passes_over_nothing_of_other_indexes() {
    // Two images (two tags), each an image index with one windows manifest; image B's
    // manifest blob was not exported.
    let m = two_windows_versions(false);
    let l = Layout { dir: &m.root };
    let idx = read_index(&m.root);
    let entry = |i: usize| idx["manifests"][i].clone();
    let (ia, ia_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry(1)]}));
    let (ib, ib_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry(0)]}));
    write_index(
        &m.root,
        &json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": ia.to_string(), "size": ia_len},
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": ib.to_string(), "size": ib_len}]}),
    );
    m.remove_blob(&m.manifests[0]);
    let image = open_digest(&m.root, "windows/amd64", &ia.short()).expect("image A");
    assert_eq!(image.manifest_digest(), Some(&m.manifests[1]));
    let passed = passed_over(&image);
    assert!(
        passed.is_empty(),
        "image A has no absent manifest: {passed:?}"
    );
}

/// Indexes whose levels each list the next one 16 times (no cycle, within the depth limit)
/// would be 16^8 documents if every listing were followed; each index is expanded once, so a
/// 20 KB layout opens at once.
#[test]
fn index_fan_out_expands_each_index_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("layout");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("w");
    let l = Layout { dir: &root };
    const FAN: usize = 16;
    let (mut below, mut below_len) = l.json_blob(&json!({"schemaVersion": 2, "manifests": []}));
    // Levels 8..=1 (index.json is depth 0; depth 8 is the deepest accepted).
    for _ in 0..7 {
        let entry = json!({"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": below.to_string(), "size": below_len});
        (below, below_len) =
            l.json_blob(&json!({"schemaVersion": 2, "manifests": vec![entry; FAN]}));
    }
    let entry = json!({"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": below.to_string(), "size": below_len});
    write_index(
        &root,
        &json!({"schemaVersion": 2, "manifests": vec![entry; FAN]}),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let path = root.clone();
    std::thread::spawn(move || {
        let r = Image::open(&path, &Platform::windows_amd64()).map(|_| ());
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        // No manifest at all below the indexes: nothing matches windows/amd64.
        Ok(result) => assert!(
            result.as_ref().is_err_and(|e| e.contains("windows/amd64")),
            "{result:?}"
        ),
        Err(_) => panic!("Image::open still running after 20 s on a 20 KB layout"),
    }
}

/// `"annotations": null` on an index entry is the same as none.
#[test]
fn null_annotations_are_no_annotations() {
    let m = multi_layout(&[(win("10.0.20348.2340"), win("10.0.20348.2340"))], false);
    let mut index = read_index(&m.root);
    index["manifests"][0]["annotations"] = serde_json::Value::Null;
    write_index(&m.root, &index);
    let r = open(&m.root, "windows/amd64");
    assert!(
        r.is_ok(),
        "{}",
        r.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

/// An absent image index states no platform (index entries for indexes rarely carry one), yet
/// may hold the wanted version: when a present manifest is read instead, the index is reported
/// as passed over.
#[test]
fn an_absent_index_beside_the_chosen_manifest_is_reported() {
    let m = two_windows_versions(false);
    let l = Layout { dir: &m.root };
    let idx = read_index(&m.root);
    // Image A: an index listing the ltsc2019 manifest (index blob not exported).
    let (ia, ia_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [idx["manifests"][0].clone()]}));
    write_index(
        &m.root,
        &json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": ia.to_string(), "size": ia_len},
            idx["manifests"][1].clone()]}),
    );
    m.remove_blob(&ia);
    let image = open(&m.root, "windows/amd64").expect("the present ltsc2022 manifest");
    assert_eq!(image.manifest_digest(), Some(&m.manifests[1]));
    assert!(
        !image.absent_alternatives().is_empty(),
        "absent index {} could hold a windows/amd64 manifest, but nothing is noted",
        ia.short()
    );
}

/// docker-save fallback naming a gzip-compressed saved file named by its own digest: it is
/// read and checked against that digest (its tar against the diff_id by the importer).
#[test]
fn fallback_compressed_saved_layer_is_checked_against_its_name() {
    let base = layer_tar("Files/base.txt", b"foreign base");
    let gz = gzip(&base);
    let base_id = Digest::of(&base);
    let gz_id = Digest::of(&gz);
    let registry = gzip(&layer_tar("Files/base.txt", b"something else"));
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("save.tar");
    ForeignSave::new(&base_id, &registry, None).write(&path, &[&gz], &[&gz_id]);
    let image = Image::open(&path, &Platform::windows_amd64()).expect("open");
    let layer = &image.layers()[0];
    assert!(layer.present);
    assert_eq!(layer.compression, Compression::Gzip);
    let r = read_layer(&image, 0);
    assert!(
        r.is_ok(),
        "blob {} (digest {gz_id}, its name) is refused: {}",
        blob(&gz_id),
        r.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

/// Folder, tar and tar.gz of one layout with an absent manifest choose alike, note alike and
/// fail alike.
#[test]
fn absent_choice_is_the_same_in_folder_tar_and_tar_gz() {
    for nested in [false, true] {
        let m = two_windows_versions(nested);
        m.remove_blob(&m.manifests[0]);
        let (tar_path, gz_path) = pack_layout(&m.root);
        let describe = |p: &Path| {
            let ok = open(p, "windows/amd64").map(|i| {
                (
                    i.manifest_digest().cloned(),
                    i.absent_alternatives().to_vec(),
                    i.layers()[0].digest.clone(),
                )
            });
            let err = open(p, "windows/amd64:10.0.17763").expect_err("absent");
            let by_cfg = open_digest(p, "windows/amd64", &m.configs[1].short())
                .map(|i| i.manifest_digest().cloned());
            (
                ok.map_err(|e| e.to_string()),
                err.to_string().replace(&p.display().to_string(), "<src>"),
                by_cfg.map_err(|e| e.to_string()),
            )
        };
        let folder = describe(&m.root);
        assert_eq!(
            folder.0.as_ref().expect("ok").0.as_ref(),
            Some(&m.manifests[1])
        );
        assert_eq!(describe(&tar_path), folder, "tar");
        assert_eq!(describe(&gz_path), folder, "tar.gz");
        for p in [&m.root, &tar_path, &gz_path] {
            let image = open(p, "windows/amd64").expect("open");
            assert_eq!(read_layer(&image, 0).expect("layer").len() % 512, 0);
        }
    }
}

/// The docker-save fallback in a tar.gz: the right saved file reads, a wrong one fails its
/// digest check at the end of the stream.
#[test]
fn foreign_fallback_digest_is_checked_in_tar_gz() {
    let base = layer_tar("Files/base.txt", b"foreign base");
    let other = layer_tar("Files/other.txt", b"not the base");
    let registry_blob = gzip(&base);
    let base_id = Digest::of(&base);
    let other_id = Digest::of(&other);
    let save = ForeignSave::new(&base_id, &registry_blob, None);
    let tmp = tempfile::tempdir().expect("tempdir");
    for (saved, good) in [(&base_id, true), (&other_id, false)] {
        let path = tmp.path().join("save.tar");
        save.write(&path, &[&base, &other], &[saved]);
        let gz_path = tmp.path().join("save.tar.gz");
        std::fs::write(&gz_path, gzip(&std::fs::read(&path).expect("r"))).expect("w");
        for p in [&path, &gz_path] {
            let image = Image::open(p, &Platform::windows_amd64()).expect("open");
            let r = read_layer(&image, 0);
            if good {
                assert_eq!(r.expect("saved tar"), base);
            } else {
                let err = r.expect_err("wrong file");
                assert!(err.to_string().contains("digest mismatch"), "{err}");
            }
        }
    }
}

/// Hostile index entries: errors, never panics.
#[test]
fn hostile_index_entries_do_not_panic() {
    let m = multi_layout(&[(win("10.0.20348.2340"), win("10.0.20348.2340"))], false);
    let good = read_index(&m.root)["manifests"][0].clone();
    let variants: Vec<serde_json::Value> = vec![
        json!({"mediaType": 5, "digest": good["digest"]}),
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": good["digest"]}),
        json!({"mediaType": "", "digest": "sha256:"}),
        json!({"mediaType": "", "digest": "md5:abc"}),
        json!({"mediaType": "text/plain", "digest": 7}),
        json!({"mediaType": "", "digest": good["digest"], "size": u64::MAX}),
        json!({"mediaType": "", "digest": good["digest"], "platform": "windows"}),
        json!({"mediaType": "", "digest": good["digest"], "platform": {"os": "", "os.version": ""}}),
        json!({"mediaType": "", "digest": good["digest"], "platform": {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2340.1.2.3.4"}}),
        json!({"mediaType": "", "digest": good["digest"], "annotations": {"vnd.docker.reference.type": ["x"]}}),
        json!({"mediaType": "", "digest": format!("sha256:{}", "0".repeat(64))}),
        json!({"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", "digest": format!("sha256:{}", "1".repeat(64))}),
    ];
    for v in variants {
        for twice in [false, true] {
            let list = if twice {
                vec![v.clone(), good.clone(), v.clone()]
            } else {
                vec![v.clone()]
            };
            write_index(&m.root, &json!({"schemaVersion": 2, "manifests": list}));
            for (p, d) in [
                ("windows/amd64", None),
                ("windows/amd64:10.0.20348", Some(m.manifests[0].short())),
            ] {
                let r = match &d {
                    Some(d) => open_digest(&m.root, p, d),
                    None => open(&m.root, p),
                };
                // Whatever opens is the one real manifest; the rest are clean errors.
                if let Ok(image) = r {
                    assert_eq!(image.manifest_digest(), Some(&m.manifests[0]), "{v}");
                }
            }
        }
    }
}

/// An index.json listing more entries than an image may have is refused, naming the limit.
#[test]
fn too_many_index_entries_are_refused() {
    let m = multi_layout(&[(win("10.0.20348.2340"), win("10.0.20348.2340"))], false);
    let entries: Vec<serde_json::Value> = (0..10_001)
        .map(|i| {
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": Digest::of(format!("{i}").as_bytes()).to_string(),
                "platform": {"os": "windows", "architecture": "amd64"}})
        })
        .collect();
    write_index(&m.root, &json!({"schemaVersion": 2, "manifests": entries}));
    let err = open(&m.root, "windows/amd64").expect_err("over the limit");
    assert!(
        err.to_string().contains("more than 10000 manifests"),
        "{err}"
    );
}

/// A blob that is both manifest Y and the config of manifest X (hostile): `--manifest <Y>` names
/// Y, never X, even when only X is for the wanted platform.
#[test]
fn a_digest_that_is_a_manifest_names_that_manifest() {
    let m = multi_layout(
        &[(
            json!({"os": "linux", "architecture": "amd64"}),
            json!({"os": "linux", "architecture": "amd64"}),
        )],
        false,
    );
    let l = Layout { dir: &m.root };
    let y = m.manifests[0].clone();
    let y_bytes = std::fs::read(m.root.join("blobs/sha256").join(y.hex())).expect("read y");
    let layer = l.blob(&layer_tar("Files/x.txt", b"x"));
    let (x, x_len) = l.json_blob(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": y.to_string(), "size": y_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string()}]}));
    let mut index = read_index(&m.root);
    index["manifests"].as_array_mut().expect("array").push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": x.to_string(), "size": x_len,
        "platform": {"os": "windows", "architecture": "amd64"}}));
    write_index(&m.root, &index);
    let r = open_digest(&m.root, "windows/amd64", &y.to_string());
    assert!(
        matches!(
            r,
            Err(Error::ManifestNotForPlatform { .. }) | Err(Error::AmbiguousDigestPrefix { .. })
        ),
        "--manifest {y} (a linux manifest) read {:?}",
        r.map(|i| i.manifest_digest().cloned())
            .map_err(|e| e.to_string())
    );
}
