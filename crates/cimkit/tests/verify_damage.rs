//! `cimkit verify` on images damaged on purpose: every kind of damage makes it exit 1 and name
//! the damaged file; the undamaged image exits 0.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// Imports the sample layer, damages it with `damage`, and checks verify's verdict.
fn check(name: &str, damage: impl FnOnce(&Path, &Path)) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    cimkit_ok(&["verify", s(&cim)], 0);
    let dir = cim.parent().expect("dir").to_path_buf();
    damage(&cim, &dir);
    let out = cimkit(&["verify", s(&cim)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: verify should fail\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("problem"), "{name}: {stdout}");
    let json = cimkit(&["verify", "--json", s(&cim)]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["ok"], false, "{name}");
    assert!(
        !v["problems"].as_array().expect("array").is_empty(),
        "{name}"
    );
    eprintln!("{name}: {}", stdout.lines().next().unwrap_or_default());
}

fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).expect("read");
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).expect("write");
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

#[test]
fn damaged_cim_header() {
    check("cim header magic", |cim, _| patch(cim, 0, b"XXXXXXXX"));
}

#[test]
fn missing_region_file() {
    check("missing region", |_, dir| {
        let regions = files_with_prefix(dir, "region_");
        std::fs::remove_file(&regions[0]).expect("rm");
    });
}

#[test]
fn truncated_region_file() {
    check("truncated region", |_, dir| {
        for r in files_with_prefix(dir, "region_") {
            let len = std::fs::metadata(&r).expect("m").len();
            if len > 4096 {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&r)
                    .expect("open");
                f.set_len(len / 2).expect("truncate");
            }
        }
    });
}

#[test]
fn damaged_region_header() {
    check("region header", |_, dir| {
        for r in files_with_prefix(dir, "region_") {
            patch(&r, 0, &[0xff; 16]);
        }
    });
}

#[test]
fn damaged_objectid_file() {
    check("objectid magic", |_, dir| {
        for o in files_with_prefix(dir, "objectid_") {
            patch(&o, 0, &[0xff; 8]);
        }
    });
}

#[test]
fn directory_out_of_order() {
    // Rename "hello.txt" to "zello.txt" in place: the directory's names are no longer sorted.
    check("unsorted directory", |_, dir| {
        let needle = utf16("hello.txt");
        let mut hit = false;
        for r in files_with_prefix(dir, "region_") {
            let mut data = std::fs::read(&r).expect("read");
            if let Some(pos) = data
                .windows(needle.len())
                .position(|w| w == needle.as_slice())
            {
                data[pos] = b'z';
                std::fs::write(&r, data).expect("write");
                hit = true;
            }
        }
        assert!(hit, "name found in a region");
    });
}

#[test]
fn garbage_over_the_metadata() {
    // Overwrite everything after the region header with 0xff: tables and data are garbage.
    check("garbage tables", |_, dir| {
        for r in files_with_prefix(dir, "region_") {
            let len = std::fs::metadata(&r).expect("m").len() as usize;
            let mut data = std::fs::read(&r).expect("read");
            for b in data.iter_mut().take(len).skip(64) {
                *b = 0xff;
            }
            std::fs::write(&r, data).expect("write");
        }
    });
}

#[test]
fn verify_of_missing_file_is_an_input_error() {
    assert_eq!(
        cimkit(&["verify", "/nonexistent.cim"]).status.code(),
        Some(2)
    );
}
