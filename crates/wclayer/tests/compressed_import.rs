//! Compressed layer tars are decompressed on one thread and imported on another: the result
//! must equal the plain import, damaged streams must fail cleanly with nothing committed, and
//! progress must still reach the end of the input.

mod common;

use std::io::Write;
use std::path::Path;

use common::{import, listing, opts, small_base, TarBuilder};
use wclayer::import_layer;

/// A base layer whose files span many pipe chunks: hives, one large file, many small ones.
fn layer(shared: &Path) -> Vec<u8> {
    small_base(shared, |t| {
        t.dir("Files/data", &[]);
        // Poorly compressible bytes, so the compressed stream is long too.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        t.file("Files/data/big.bin", &[], &noise(3 << 20));
        for i in 0..200 {
            t.file(&format!("Files/data/f{i}.txt"), &[], &noise(1 + i * 97));
        }
    })
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zstd(b: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(b, 1).unwrap()
}

/// Every path with its size and content digest, walked from the root of an image.
fn tree(cim_path: &Path) -> Vec<(String, u64, u32, Vec<u8>)> {
    let cim = cimfs::Cim::open(cim_path).unwrap();
    let mut out = vec![];
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        for e in cim.read_dir(&dir).unwrap() {
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}\\{}", e.name)
            };
            let info = cim.stat(&path).unwrap();
            let content = if info.is_directory {
                todo.push(path.clone());
                vec![]
            } else {
                common::read_cim_file(&cim, &path)
            };
            out.push((path, info.size, info.attributes, content));
        }
    }
    out.sort();
    out
}

#[test]
fn gzip_and_zstd_import_like_the_plain_tar() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let plain = layer(&shared);
    let want = {
        let s = import(&plain, &tmp.path().join("plain/1"), &[]).unwrap();
        tree(&s.cim_path)
    };
    assert!(want
        .iter()
        .any(|(p, s, _, _)| p.ends_with("big.bin") && *s == 3 << 20));
    for (name, bytes) in [("gz", gzip(&plain)), ("zst", zstd(&plain))] {
        let layer = tmp.path().join(name).join("1");
        let mut last = wclayer::Progress::default();
        let mut calls = 0;
        let s = import_layer(&bytes[..], &opts(&layer, &[]), &mut |p| {
            assert!(p.bytes_read >= last.bytes_read && p.entries >= last.entries);
            last = p;
            calls += 1;
        })
        .unwrap();
        assert_eq!(tree(&s.cim_path), want, "{name}");
        assert!(cimfs::verify::verify(&s.cim_path).is_empty(), "{name}");
        assert_eq!(
            last.bytes_read,
            bytes.len() as u64,
            "{name}: progress reaches the end"
        );
        assert_eq!(
            last.entries, s.entries,
            "{name}: last progress has every entry"
        );
        assert!(calls > 1, "{name}: progress while importing");
    }
}

#[test]
fn damaged_compressed_streams_fail_with_nothing_committed() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let plain = layer(&shared);
    let gz = gzip(&plain);
    let zst = zstd(&plain);
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 64] {
        *b ^= 0x5A;
    }
    let cases = [
        ("gzip with flipped bytes", flipped),
        ("gzip cut in half", gz[..gz.len() / 2].to_vec()),
        ("zstd cut in half", zst[..zst.len() / 2].to_vec()),
        ("zstd cut after the header", zst[..20].to_vec()),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let snapshots = tmp.path().join(format!("s{i}"));
        let layer = snapshots.join("1");
        let err = import(&bytes, &layer, &[]).unwrap_err();
        assert!(!err.to_string().is_empty(), "{what}");
        assert!(
            !snapshots.join("cim-layers/1.cim").exists(),
            "{what}: no image committed"
        );
        assert!(
            !layer.exists() || listing(&layer).is_empty(),
            "{what}: layer folder left with {:?}",
            listing(&layer)
        );
    }
}

/// An importer that fails on an early entry stops the decompressing side too, however much
/// input follows.
#[test]
fn an_early_bad_entry_stops_the_whole_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.file("Files/../../escape.txt", &[], b"x");
    t.file("Files/pad.bin", &[], &vec![7u8; 64 << 20]);
    let gz = gzip(&t.finish());
    let snapshots = tmp.path().join("s");
    let err = import(&gz, &snapshots.join("1"), &[]).unwrap_err();
    assert!(err.to_string().contains("escape.txt"), "{err}");
    assert!(!snapshots.join("cim-layers/1.cim").exists());
    assert!(!tmp.path().join("escape.txt").exists());
}

/// For whole image archives, zero padding after the gzip stream is accepted wherever it ends;
/// anything after the padding, another gzip member included, is refused, whether or not the
/// zeros end on a read-buffer boundary (64 KiB).
#[test]
fn archive_zero_padding_accepts_only_zeros() {
    use std::io::Read;
    let body = b"archive bytes".repeat(1000);
    let gz = gzip(&body);
    let read = |bytes: Vec<u8>| -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        wclayer::decompressed_archive(std::io::Cursor::new(bytes))
            .map_err(std::io::Error::other)?
            .read_to_end(&mut out)?;
        Ok(out)
    };
    for zeros in [1, 65536 - gz.len() + 6, 65536 - gz.len() + 7, 200_000] {
        let mut padded = gz.clone();
        padded.resize(gz.len() + zeros, 0);
        assert_eq!(read(padded.clone()).expect("zero padding"), body, "{zeros}");
        let mut then_member = padded.clone();
        then_member.extend(gzip(b"more"));
        let err = read(then_member).expect_err("a member after the padding");
        assert!(err.to_string().contains("zero padding"), "{zeros}: {err}");
    }
    // Layers stay strict: no padding at all.
    let mut padded = gz.clone();
    padded.push(0);
    let mut out = Vec::new();
    let err = wclayer::decompressed(std::io::Cursor::new(padded))
        .expect("gzip")
        .read_to_end(&mut out)
        .expect_err("layer padding refused");
    assert!(err.to_string().contains("trailing data"), "{err}");
}
