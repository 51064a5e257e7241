//! Fuzzes the reader and `verify`: each input damages one file of a small forked image built at
//! start-up (XOR bytes at an offset, or truncate), then everything reachable is read.
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
    let d = FileMetadata { attributes: format::FILE_ATTRIBUTE_DIRECTORY, ..Default::default() };
    let mut w = CimWriter::create(dir, "base.cim").expect("create");
    w.add("Files", &d).expect("dir");
    let f = |size: u64| FileMetadata {
        size,
        extended_attributes: vec![0, 0, 0, 0, 0, 2, 1, 0, b'A', b'B', 0, 7],
        reparse_data: if size == 5 { vec![0x0c, 0, 0, 0xa0, 4, 0, 0, 0, 1, 2, 3, 4] } else { Vec::new() },
        ..Default::default()
    };
    w.add("Files\\small.txt", &f(5)).expect("file");
    w.write(b"small").expect("write");
    w.add("Files\\large.bin", &f(5000)).expect("file");
    w.write(&[3u8; 5000]).expect("write");
    w.add_alternate_stream("Files\\small.txt:ads", 4).expect("ads");
    w.write(b"ads!").expect("write");
    w.commit().expect("commit");
    let mut c = CimWriter::fork(dir, "base.cim", "child.cim").expect("fork");
    c.add("Files\\sub", &d).expect("dir");
    c.add_link("Files\\sub\\link.bin", "Files\\large.bin").expect("link");
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

fn walk(cim_path: &Path) -> cimfs::Result<()> {
    let cim = Cim::open(cim_path)?;
    let mut seen = HashSet::new();
    let mut stack = vec![cim.root()];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) || seen.len() > 1000 {
            continue;
        }
        let info = cim.file(id)?;
        if info.is_directory {
            stack.extend(cim.read_dir_id(id)?.into_iter().map(|e| e.file_id));
        } else if let Ok(mut r) = cim.open_id(id, None) {
            let mut sink = [0u8; 4096];
            while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
        }
        for s in cim.streams_id(id)? {
            let mut b = [0u8; 64];
            let _ = cim.read_at(id, Some(&s.name), 0, &mut b);
        }
    }
    let _ = cim.lookup("Files\\sub\\link.bin");
    Ok(())
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
    let _ = walk(&s.dir.join("child.cim"));
    let _ = cimfs::verify::verify(&s.dir.join("child.cim"));
    std::fs::write(path, orig).expect("restore file");
});
