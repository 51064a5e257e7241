//! `cimkit verify` on images damaged on purpose: every kind of damage makes it exit 1 and name
//! the damaged file (and, for a file entry, its blobs or its name, the file id, path and offset);
//! the undamaged image exits 0; `--digests` also catches changed file data.

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

const OFFSET_MASK: u64 = (1 << 48) - 1;

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Byte offset of file `id`'s entry in the metadata region `m` (the filesystem object is its
/// last 24 bytes and points at the file table directory).
fn entry_offset(m: &[u8], id: u32) -> usize {
    let slot = (id - 1) as usize;
    let ftd = (le64(m, m.len() - 0x18 + 8) & OFFSET_MASK) as usize;
    let t = ftd + 16 * (slot / 1024);
    let size = usize::from(u16::from_le_bytes([m[t + 10], m[t + 11]]));
    (le64(m, t) & OFFSET_MASK) as usize + (slot % 1024) * size
}

/// Imports the sample, lets `damage` patch its metadata region (it gets the open image and the
/// region bytes and returns the offset it damaged), then expects `verify --json` to exit 1 with a
/// problem in that region whose object names `object` at that offset whose message holds `needle`.
fn check_problem(
    name: &str,
    object: &str,
    needle: &str,
    damage: impl FnOnce(&cimfs::Cim, &mut Vec<u8>) -> usize,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    cimkit_ok(&["verify", s(&cim)], 0);
    let meta = cimfs::image_files(&cim).expect("files").regions[0].clone();
    let mut m = std::fs::read(&meta).expect("read");
    let offset = {
        let image = cimfs::Cim::open(&cim).expect("open");
        damage(&image, &mut m)
    };
    std::fs::write(&meta, &m).expect("write");
    let out = cimkit(&["verify", "--json", s(&cim)]);
    assert_eq!(out.status.code(), Some(1), "{name}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = v["problems"].as_array().expect("array");
    assert!(
        problems.iter().any(|p| {
            p["file"] == s(&meta)
                && p["object"].as_str().is_some_and(|o| o.contains(object))
                && p["offset"] == offset as u64
                && p["message"].as_str().is_some_and(|t| t.contains(needle))
        }),
        "{name}: no problem about {object} at {offset:#x} saying {needle:?}: {problems:#?}"
    );
    let text = cimkit_ok(&["verify", s(&cim)], 1);
    assert!(text.contains(&format!("at offset {offset:#x}")), "{text}");
}

#[test]
fn undefined_flag_bits() {
    check_problem(
        "flags",
        "(\\Files\\big.bin)",
        "does not define",
        |cim, m| {
            let e = entry_offset(m, cim.lookup("Files\\big.bin").expect("lookup"));
            m[e + 1] |= 0x40;
            e
        },
    );
}

#[test]
fn reparse_tag_without_a_buffer() {
    check_problem(
        "tag",
        "(\\Files\\big.bin)",
        "no reparse buffer",
        |cim, m| {
            let e = entry_offset(m, cim.lookup("Files\\big.bin").expect("lookup"));
            m[e + 4..e + 8].copy_from_slice(&0xA000_000Cu32.to_le_bytes());
            e + 4
        },
    );
}

#[test]
fn junction_buffer_without_its_tag() {
    check_problem(
        "junction tag",
        "(\\Files\\junction)",
        "differs",
        |cim, m| {
            let info = cim.stat("Files\\junction").expect("stat");
            assert_eq!(info.attributes & 0x410, 0x410, "a directory reparse point");
            let e = entry_offset(m, info.file_id);
            m[e + 4..e + 8].fill(0);
            e + 4
        },
    );
}

#[test]
fn security_descriptor_that_is_not_self_relative() {
    // Files share the layer's one SD: it is reported once, for the first file found using it.
    check_problem("sd", "file ", "self-relative", |cim, m| {
        let e = entry_offset(m, cim.lookup("Files\\hello.txt").expect("lookup"));
        let sd = (le64(m, e + 0x38) & OFFSET_MASK) as usize;
        // Control's high byte (after the u16 count, revision and Sbz1): clear SE_SELF_RELATIVE.
        m[sd + 2 + 3] &= 0x7f;
        sd
    });
}

#[test]
fn malformed_ea_chain() {
    check_problem(
        "ea",
        "(\\Files\\dir\\\u{fc}nic\u{f6}de.txt)",
        "NUL-terminated",
        |cim, m| {
            let e = entry_offset(
                m,
                cim.lookup("Files\\dir\\\u{fc}nic\u{f6}de.txt")
                    .expect("lookup"),
            );
            let ea = (le64(m, e + 0x40) & OFFSET_MASK) as usize;
            let name_len = usize::from(m[ea + 5]);
            m[ea + 8 + name_len] = b'X';
            ea
        },
    );
}

#[test]
fn name_with_a_colon() {
    check_problem(
        "name",
        "(\\Files\\hel:o.txt)",
        "holds a colon (:)",
        |_, m| {
            let mut needle = 9u16.to_le_bytes().to_vec();
            needle.extend(utf16("hello.txt"));
            let at = m
                .windows(needle.len())
                .position(|w| w == needle.as_slice())
                .expect("name in the metadata region");
            m[at + 2 + 2 * 3] = b':';
            at
        },
    );
}

#[test]
fn digests_catch_changed_file_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let ok = cimkit_ok(&["verify", "--digests", s(&cim)], 0);
    assert!(ok.contains("stored objects re-hashed, all match"), "{ok}");
    let needle = b"hello world\n";
    let mut hit = None;
    for r in cimfs::image_files(&cim).expect("files").regions {
        let mut data = std::fs::read(&r).expect("read");
        if let Some(pos) = data.windows(needle.len()).position(|w| w == needle) {
            data[pos] = b'J';
            std::fs::write(&r, data).expect("write");
            hit = Some((r, pos));
        }
    }
    let (region, pos) = hit.expect("data in a region");
    // Data bytes cannot be judged structurally: plain verify still passes.
    cimkit_ok(&["verify", s(&cim)], 0);
    let text = cimkit_ok(&["verify", "--digests", s(&cim)], 1);
    assert!(
        text.contains(&format!("{}: object ", region.display()))
            && text.contains(&format!("at offset {pos:#x}"))
            && text.contains("do not match their object id digest")
            // the paths whose data it is: the file and its hard link
            && text.contains(r"the data of Files\hello-link.txt, Files\hello.txt)"),
        "{text}"
    );
    let json = cimkit(&["verify", "--digests", "--json", s(&cim)]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["problems"].as_array().expect("array").len(), 1, "{v}");
}
