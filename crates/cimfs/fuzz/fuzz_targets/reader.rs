//! Fuzzes the reader and `verify`: each input damages one file of a small forked image built at
//! start-up (XOR bytes at an offset, or truncate), then everything a user can trigger is read:
//! open, a recursive walk with stat by id and by path, every stream (alternate ones included),
//! `image_files`, `verify` and (for inputs with bit 0x40 of the first byte) `verify_digests`;
//! for inputs with bit 0x01 of the second byte, the damaged image is also forked and committed
//! (a fork copies its parents' metadata, so a damaged parent must give an error, not a panic).
//! Run with `cargo +nightly fuzz run reader` from crates/cimfs.

#![no_main]

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cimfs::{format, Cim, CimWriter, FileMetadata};
use libfuzzer_sys::fuzz_target;

struct Seed {
    dir: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn build(dir: &Path) {
    let d = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    };
    let mut w = CimWriter::create(dir, "base.cim").expect("create");
    w.add("Files", &d).expect("dir");
    let f = |size: u64| FileMetadata {
        size,
        extended_attributes: vec![0, 0, 0, 0, 0, 2, 1, 0, b'A', b'B', 0, 7],
        reparse_data: if size == 5 {
            vec![0x0c, 0, 0, 0xa0, 4, 0, 0, 0, 1, 2, 3, 4]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    w.add("Files\\small.txt", &f(5)).expect("file");
    w.write(b"small").expect("write");
    w.add("Files\\large.bin", &f(5000)).expect("file");
    w.write(&[3u8; 5000]).expect("write");
    w.add_alternate_stream("Files\\small.txt:ads", 4)
        .expect("ads");
    w.write(b"ads!").expect("write");
    w.commit().expect("commit");
    let mut c = CimWriter::fork(dir, "base.cim", "child.cim").expect("fork");
    c.add("Files\\sub", &d).expect("dir");
    c.add_link("Files\\sub\\link.bin", "Files\\large.bin")
        .expect("link");
    c.commit().expect("commit");
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cimfs-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        build(&dir);
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| {
                let p = e.expect("entry").path();
                let b = std::fs::read(&p).expect("read");
                (p, b)
            })
            .collect();
        files.sort();
        Seed { dir, files }
    })
}

/// Reads at most this many bytes of each stream: a hostile size may declare exabytes of zeros.
const READ_CAP: u64 = 1 << 20;

fn drain(mut r: impl Read) {
    let mut sink = [0u8; 4096];
    let mut total = 0u64;
    while total < READ_CAP {
        match r.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
}

/// What a user's walk triggers: every directory recursively (with a visited set, as cimkit
/// walk/export/mount keep), stat by path and by id, every stream read, alternate streams included.
fn walk(cim_path: &Path) -> cimfs::Result<()> {
    let cim = Cim::open(cim_path)?;
    let _ = (
        cim.parents(),
        cim.own_regions(),
        cim.file_count(),
        cim.upcase_table().len(),
    );
    let mut seen = HashSet::new();
    let mut stack = vec![(cim.root(), String::new())];
    while let Some((id, path)) = stack.pop() {
        if !seen.insert(id) || seen.len() > 1000 {
            continue;
        }
        let _ = cim.stat(&path);
        let Ok(info) = cim.file(id) else { continue };
        let _ = info.kind();
        let _ = cimfs::FileMetadata::from(&info);
        if info.is_directory {
            let _ = cim.read_dir(&path);
            if let Ok(entries) = cim.read_dir_id(id) {
                for e in entries {
                    let _ = cim.child(id, &e.name, &path);
                    stack.push((e.file_id, format!("{path}\\{}", e.name)));
                }
            }
        } else {
            if let Ok(r) = cim.open_id(id, None) {
                drain(r);
            }
            if let Ok(r) = cim.open_file(&path) {
                drain(r);
            }
        }
        if let Ok(streams) = cim.streams_id(id) {
            for s in streams {
                if let Ok(r) = cim.open_id(id, Some(&s.name)) {
                    drain(r);
                }
                let _ = cim.open_stream(&path, &s.name);
                let mut b = [0u8; 64];
                let _ = cim.read_at(id, Some(&s.name), s.size.saturating_sub(10), &mut b);
            }
        }
    }
    let _ = cim.lookup("Files\\sub\\link.bin");
    Ok(())
}

/// Forks the (damaged) child image with one new file and commits; walks and verifies the result
/// when it commits; leaves the folder as it was.
fn fork_probe(dir: &Path) {
    let probe = dir.join("probe.cim");
    if let Ok(mut w) = CimWriter::fork(dir, "child.cim", "probe.cim") {
        let meta = FileMetadata {
            size: 1,
            ..Default::default()
        };
        let added = w.add("probe.txt", &meta).and_then(|()| w.write(b"p"));
        if added.is_ok() && w.commit().is_ok() {
            let _ = walk(&probe);
            let _ = cimfs::verify::verify(&probe);
        }
    }
    if let Ok(files) = cimfs::image_files(&probe) {
        for f in files.regions.iter().chain(files.objectids.iter()) {
            let _ = std::fs::remove_file(f);
        }
    }
    let _ = std::fs::remove_file(&probe);
}

fuzz_target!(|data: &[u8]| {
    let s = seed();
    if data.len() < 5 || s.files.is_empty() {
        return;
    }
    let which = usize::from(data[0] & 0x7f) % s.files.len();
    let truncate = data[0] & 0x80 != 0;
    let (path, orig) = &s.files[which];
    let at = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize % (orig.len() + 1);
    let mut m = orig.clone();
    if truncate {
        m.truncate(at);
    } else {
        for (k, b) in data[5..].iter().enumerate() {
            if let Some(x) = m.get_mut(at + k) {
                *x ^= b;
            }
        }
    }
    std::fs::write(path, &m).expect("write mutated file");
    let child = s.dir.join("child.cim");
    let _ = walk(&child);
    let _ = cimfs::image_files(&child);
    let _ = cimfs::verify::verify(&child);
    if data[0] & 0x40 != 0 {
        let _ = cimfs::verify::verify_digests(&child);
    }
    if data[1] & 0x01 != 0 {
        fork_probe(&s.dir);
    }
    std::fs::write(path, orig).expect("restore file");
});
