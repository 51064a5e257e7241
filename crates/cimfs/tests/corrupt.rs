//! Damaged images: truncations and bit flips of every file of a forked image must give errors
//! (naming the image) or valid-looking data, never a panic or a runaway allocation.

use std::fs;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use cimfs::{format, Cim, CimWriter, Error, FileMetadata};

fn build(dir: &Path) -> PathBuf {
    let d = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    };
    let mut w = CimWriter::create(dir, "base.cim").unwrap();
    w.add("Files", &d).unwrap();
    let f = |size: u64| FileMetadata {
        size,
        // Self-relative, owner S-1-5-18 at offset 20.
        security_descriptor: vec![
            1, 0, 4, 0x80, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 5,
            18, 0, 0, 0,
        ],
        extended_attributes: vec![0, 0, 0, 0, 0, 2, 1, 0, b'A', b'B', 0, 7],
        ..Default::default()
    };
    w.add("Files\\small.txt", &f(5)).unwrap();
    w.write(b"small").unwrap();
    w.add("Files\\large.bin", &f(9000)).unwrap();
    w.write(&[3u8; 9000]).unwrap();
    w.add_alternate_stream("Files\\small.txt:ads", 4).unwrap();
    w.write(b"ads!").unwrap();
    let rp = FileMetadata {
        reparse_data: vec![0x0c, 0, 0, 0xa0, 4, 0, 0, 0, 1, 2, 3, 4],
        ..Default::default()
    };
    w.add("Files\\link", &rp).unwrap();
    w.commit().unwrap();
    let mut c = CimWriter::fork(dir, "base.cim", "child.cim").unwrap();
    c.add("Files\\sub", &d).unwrap();
    c.add(
        "Files\\sub\\new.txt",
        &FileMetadata {
            size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    c.write(b"new").unwrap();
    c.remove("Files\\large.bin").unwrap();
    c.commit().unwrap();
    dir.join("child.cim")
}

/// Reads everything reachable; returns the first error. Must never panic or loop forever.
fn walk(cim_path: &Path) -> Result<u64, Error> {
    let cim = Cim::open(cim_path)?;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![cim.root()];
    let mut bytes = 0u64;
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let info = cim.file(id)?;
        if info.is_directory {
            for e in cim.read_dir_id(id)? {
                stack.push(e.file_id);
            }
        } else {
            let mut r = cim.open_id(id, None)?;
            let mut v = Vec::new();
            r.read_to_end(&mut v).map_err(|e| Error::Io {
                file: cim_path.into(),
                source: e,
            })?;
            bytes += v.len() as u64;
        }
        for s in cim.streams_id(id)? {
            let mut buf = vec![0u8; 16];
            let _ = cim.read_at(id, Some(&s.name), 0, &mut buf)?;
        }
    }
    let _ = cim.lookup("Files\\sub\\new.txt");
    Ok(bytes)
}

fn image_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Offsets worth damaging in a file of `len` bytes: every header byte, then a stride, then the
/// metadata tail (where everything but the upcase table lives).
fn positions(len: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..len.min(0x60)).collect();
    p.extend((0x60..len).step_by((len / 48).max(1)));
    p.extend((len.saturating_sub(0x300).max(0x60)..len).step_by(3));
    p.sort_unstable();
    p.dedup();
    p
}

#[test]
fn intact_image_walks() {
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    assert_eq!(walk(&cim).unwrap(), 8);
    assert!(cimfs::verify::verify(&cim).is_empty());
}

#[test]
fn truncations_give_errors() {
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    let base = t.path().join("base.cim");
    for file in image_files(t.path()) {
        let orig = fs::read(&file).unwrap();
        for cut in positions(orig.len()) {
            fs::write(&file, &orig[..cut]).unwrap();
            // Both images: the base reads its own files only, the fork also the base's regions.
            for image in [&base, &cim] {
                match walk(image) {
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(
                            msg.contains(".cim")
                                || msg.contains("region_")
                                || msg.contains("objectid_"),
                            "{msg}"
                        );
                    }
                    // A .cim cut anywhere loses header bytes: that image cannot open.
                    Ok(_) => {
                        assert_ne!(&file, image, "{} cut at {cut} still opens", file.display())
                    }
                }
                let _ = cimfs::verify::verify(image);
                let _ = cimfs::image_files(image);
            }
        }
        fs::write(&file, &orig).unwrap();
    }
}

#[test]
fn bit_flips_never_panic() {
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    let base = t.path().join("base.cim");
    let mut errors = 0;
    let mut tried = 0;
    for file in image_files(t.path()) {
        let orig = fs::read(&file).unwrap();
        for pos in positions(orig.len()) {
            for bit in [(pos % 8) as u8, 7] {
                let mut m = orig.clone();
                m[pos] ^= 1 << bit;
                fs::write(&file, &m).unwrap();
                tried += 1;
                if let Err(e) = walk(&cim) {
                    errors += 1;
                    assert_names_a_file(&e);
                }
                let _ = walk(&base);
                let _ = cimfs::verify::verify(&cim);
                let _ = cimfs::verify::verify(&base);
            }
        }
        fs::write(&file, &orig).unwrap();
    }
    // Many flips land in data or padding and are harmless; header and table flips must be caught.
    assert!(errors > 0 && errors < tried, "{errors} of {tried}");
}

/// Every error from a damaged image names an image file; a `Corrupt` one also says what it read.
fn assert_names_a_file(e: &Error) {
    let msg = e.to_string();
    assert!(
        msg.contains(".cim") || msg.contains("region_") || msg.contains("objectid_"),
        "{msg}"
    );
    if let Error::Corrupt { object, .. } = e {
        assert!(!object.is_empty(), "{msg}");
    }
}

/// Forks `parent` into `probe.cim` with one new file and commits; removes the probe again.
fn try_fork(dir: &Path, parent: &str) -> Result<(), Error> {
    let mut w = CimWriter::fork(dir, parent, "probe.cim")?;
    w.add(
        "probe.txt",
        &FileMetadata {
            size: 1,
            ..Default::default()
        },
    )?;
    w.write_all(b"p").map_err(|e| Error::Io {
        file: dir.join("probe.cim"),
        source: e,
    })?;
    w.commit()?;
    let probe = dir.join("probe.cim");
    let files = cimfs::image_files(&probe)?;
    for f in files.regions.iter().chain(files.objectids.iter()) {
        fs::remove_file(f).unwrap();
    }
    fs::remove_file(&probe).unwrap();
    Ok(())
}

#[test]
fn forking_a_damaged_parent_errors_and_never_panics() {
    let t = tempfile::tempdir().unwrap();
    build(t.path());
    try_fork(t.path(), "base.cim").unwrap();
    // The fork copies the parents' SDs, EAs and reparse buffers: damage the base's metadata tail
    // (where they live) bit by bit; each fork either commits or says which image is damaged.
    let files = cimfs::image_files(&t.path().join("base.cim")).unwrap();
    let meta = &files.regions[0];
    let orig = fs::read(meta).unwrap();
    let (mut failed, mut tried) = (0, 0);
    for pos in orig.len().saturating_sub(0x300)..orig.len() {
        let mut m = orig.clone();
        m[pos] ^= 1 << (pos % 8);
        fs::write(meta, &m).unwrap();
        tried += 1;
        if let Err(e) = try_fork(t.path(), "base.cim") {
            failed += 1;
            assert_names_a_file(&e);
        }
        assert!(!t.path().join("probe.cim").exists());
    }
    assert!(failed > 0 && failed < tried, "{failed} of {tried}");

    // A reparse buffer whose count says 2 bytes (shorter than its own header).
    let at = orig
        .windows(6)
        .position(|w| w == [0x0c, 0, 0x0c, 0, 0, 0xa0])
        .expect("counted reparse buffer in the base metadata");
    let mut m = orig.clone();
    m[at] = 2;
    fs::write(meta, &m).unwrap();
    match try_fork(t.path(), "base.cim") {
        Err(Error::Corrupt { object, reason, .. }) => {
            assert!(object.starts_with("file "), "{object}");
            assert!(reason.contains("reparse"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    fs::write(meta, &orig).unwrap();
}

#[test]
fn a_missing_parent_region_names_the_image_and_the_file() {
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    let base_files = cimfs::image_files(&t.path().join("base.cim")).unwrap();
    let gone = &base_files.regions[1];
    fs::remove_file(gone).unwrap();
    match Cim::open(&cim) {
        Err(Error::MissingRegion { image, file }) => {
            assert_eq!(image, cim);
            assert_eq!(&file, gone);
        }
        other => panic!("expected MissingRegion, got {other:?}"),
    }
    let problems = cimfs::verify::verify(&cim);
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .contains(&*gone.file_name().unwrap().to_string_lossy())),
        "{problems:?}"
    );
}

#[test]
fn corrupt_error_names_image_object_and_offset() {
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    let files = cimfs::image_files(&cim).unwrap();
    let meta = &files.regions[0];
    let mut m = fs::read(meta).unwrap();
    // The filesystem object is the last 24 bytes: point the file table directory far past the end.
    let n = m.len();
    m[n - 0x10..n - 0x8].copy_from_slice(&(0x7fff_ffffu64 | (3u64 << 48)).to_le_bytes());
    fs::write(meta, &m).unwrap();
    let e = Cim::open(&cim).err().unwrap();
    match &e {
        Error::Corrupt {
            image,
            file,
            object,
            offset,
            ..
        } => {
            assert_eq!(image, &cim);
            assert_eq!(file, meta);
            assert_eq!(object, "file table directory");
            assert_eq!(*offset, 0x7fff_ffff);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!cimfs::verify::verify(&cim).is_empty());
}

#[test]
fn huge_counts_are_bounded_by_file_size() {
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    // A .cim claiming 65535 parents but holding none.
    let mut h = fs::read(&cim).unwrap();
    h[0x46..0x48].copy_from_slice(&0xffffu16.to_le_bytes());
    fs::write(&cim, &h).unwrap();
    assert!(matches!(Cim::open(&cim), Err(Error::Corrupt { .. })));
}

/// Finds the directory table holding `count` links whose names follow the offsets directly.
fn find_dir_table(region: &[u8], count: u32) -> usize {
    let le = |at: usize| u32::from_le_bytes(region[at..at + 4].try_into().unwrap());
    let first_name = 8 + 8 * count;
    (0..region.len() - (first_name as usize + 4))
        .find(|&p| le(p + 4) == count && le(p + 8 + 4 * count as usize) == first_name)
        .expect("directory table in the region file")
}

#[test]
fn link_names_that_overlap_are_rejected_not_multiplied() {
    // All links of a table pointing at one long name would decode to count x name length bytes
    // (gigabytes from a 1 MiB table); the decoded names must stay within the table's own size.
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "n.cim").unwrap();
    let d = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    };
    w.add("D", &d).unwrap();
    let count = 40u32;
    for i in 0..count {
        w.add(
            &format!("D\\{i:03}{}", "x".repeat(200)),
            &FileMetadata::default(),
        )
        .unwrap();
    }
    w.commit().unwrap();
    let cim = t.path().join("n.cim");
    assert_eq!(Cim::open(&cim).unwrap().read_dir("D").unwrap().len(), 40);
    let region = cimfs::image_files(&cim).unwrap().regions[0].clone();
    let mut m = fs::read(&region).unwrap();
    let p = find_dir_table(&m, count);
    let offsets = p + 8 + 4 * count as usize;
    let first = m[offsets..offsets + 4].to_vec();
    for i in 1..count as usize {
        m[offsets + 4 * i..offsets + 4 * i + 4].copy_from_slice(&first);
    }
    // Make that one name as long as the table allows: its length prefix covers the rest.
    let len = u32::from_le_bytes(m[p..p + 4].try_into().unwrap()) as usize;
    let no = u32::from_le_bytes(first[..].try_into().unwrap()) as usize;
    let units = ((len - no - 2) / 2) as u16;
    m[p + no..p + no + 2].copy_from_slice(&units.to_le_bytes());
    fs::write(&region, &m).unwrap();
    let c = Cim::open(&cim).unwrap();
    match c.read_dir("D") {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("overlap"), "{reason}"),
        other => panic!("expected a corrupt-table error, got {other:?}"),
    }
    assert!(!cimfs::verify::verify(&cim).is_empty());
}

/// Byte offset inside its region file of a region offset read from disk.
fn byte_offset(v: u64) -> usize {
    (v & ((1 << 48) - 1)) as usize
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Offset in the metadata region of file entry `id` (1-based), through the filesystem object
/// (the last 24 bytes of the region) and the file table directory.
fn entry_at(meta: &[u8], id: u32) -> usize {
    let fs_obj = meta.len() - 0x18;
    let ftd = byte_offset(le64(meta, fs_obj + 8));
    let slot = (id - 1) as usize;
    let t = ftd + 16 * (slot / 1024);
    let size = u16::from_le_bytes(meta[t + 10..t + 12].try_into().unwrap()) as usize;
    byte_offset(le64(meta, t)) + (slot % 1024) * size
}

/// Writes `bytes` to `path` and makes the file `len` bytes long: the rest is a hole that takes no
/// disk space but counts in the file's length, so a size check against the length passes.
fn write_sparse(path: &Path, bytes: &[u8], len: u64) {
    fs::write(path, bytes).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn expect_limit(r: Result<impl std::fmt::Debug, Error>, object: &str) {
    match r {
        Err(Error::Corrupt {
            object: o, reason, ..
        }) => {
            assert!(o.contains(object), "object {o:?}, wanted {object:?}");
            assert!(reason.contains("limit"), "{reason}");
        }
        other => panic!("expected a limit error for {object}, got {other:?}"),
    }
}

#[test]
fn sizes_from_a_huge_sparse_region_hit_fixed_limits() {
    // Each length below fits inside a region file made 80 GiB long (sparse): bounding by the file
    // length alone would allocate gigabytes; the fixed per-object limits refuse them first.
    const SPARSE: u64 = 80 << 30;
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    let base = t.path().join("base.cim");
    let meta_path = cimfs::image_files(&base).unwrap().regions[0].clone();
    let orig = fs::read(&meta_path).unwrap();
    let small = Cim::open(&base)
        .unwrap()
        .lookup("Files\\small.txt")
        .unwrap();

    // File table directory length: u32::MAX entries (64 GiB).
    let mut m = orig.clone();
    let n = m.len();
    m[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    write_sparse(&meta_path, &m, SPARSE);
    expect_limit(Cim::open(&base), "file table directory");
    assert!(!cimfs::verify::verify(&base).is_empty());

    // The root directory's table length: 1 GiB.
    let mut m = orig.clone();
    let root = entry_at(&m, 1);
    let lt = (1u64 << 30) | (u64::from(format::STREAM_TYPE_LINK_TABLE) << 48);
    m[root + 0x30..root + 0x38].copy_from_slice(&lt.to_le_bytes());
    write_sparse(&meta_path, &m, SPARSE);
    let c = Cim::open(&base).unwrap_or_else(|e| panic!("{e}"));
    expect_limit(c.read_dir(""), "directory table of file 1");
    expect_limit(c.lookup("Files"), "directory table of file 1");
    assert!(!cimfs::verify::verify(&base).is_empty());

    // A stream table whose own Length field says 4 GiB.
    let mut m = orig.clone();
    let e = entry_at(&m, small);
    let st = byte_offset(le64(&m, e + 0x50));
    m[st..st + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    write_sparse(&meta_path, &m, SPARSE);
    let c = Cim::open(&base).unwrap();
    expect_limit(
        c.streams_id(small),
        &format!("stream table of file {small}"),
    );
    expect_limit(
        c.read_at(small, Some("ads"), 0, &mut [0u8; 4]),
        "stream table",
    );
    fs::write(&meta_path, &orig).unwrap();
    assert_eq!(walk(&cim).unwrap(), 3 + 5);
}

#[test]
fn huge_objectid_table_is_refused_not_loaded() {
    // An objectid file claiming u32::MAX entries, made long enough (sparse) to hold them: verify
    // reports it, a fork ignores it (it only loses de-duplication), nothing reads it whole.
    let t = tempfile::tempdir().unwrap();
    let cim = build(t.path());
    let oid = cimfs::image_files(&cim).unwrap().objectids[0].clone();
    let mut h = fs::read(&oid).unwrap();
    h[0x2c..0x30].copy_from_slice(&u32::MAX.to_le_bytes());
    write_sparse(&oid, &h, 0x30 + u64::from(u32::MAX) * 40);
    let problems = cimfs::verify::verify(&cim);
    assert!(
        problems
            .iter()
            .any(|p| p.file == oid && p.message.contains("limit")),
        "{problems:?}"
    );
    assert!(cimfs::verify::verify_digests(&cim).is_empty());
    let mut w = CimWriter::fork(t.path(), "child.cim", "grandchild.cim").unwrap();
    w.add(
        "Files\\more.txt",
        &FileMetadata {
            size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(b"new").unwrap();
    w.commit().unwrap();
    let g = Cim::open(&t.path().join("grandchild.cim")).unwrap();
    let mut s = String::new();
    g.open_file("Files\\more.txt")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "new");
}

#[test]
fn writer_refuses_a_directory_table_readers_would_refuse() {
    // 2 + 255 units of name per link: 140,000 links make a table just over the 64 MiB limit.
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "wide.cim").unwrap();
    w.add(
        "D",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY,
            ..Default::default()
        },
    )
    .unwrap();
    let pad = "n".repeat(249);
    for i in 0..140_000u32 {
        w.add(&format!("D\\{i:06}{pad}"), &FileMetadata::default())
            .unwrap();
    }
    match w.commit() {
        Err(Error::InvalidArgument { path, reason, .. }) => {
            assert_eq!(path, "\\D");
            assert!(
                reason.contains("directory table") && reason.contains("limit"),
                "{reason}"
            );
        }
        other => panic!("expected the link table limit, got {other:?}"),
    }
    assert!(!t.path().join("wide.cim").exists());
}

/// Forks `child.cim`, adds a file with the same bytes as `Files\small.txt`, commits and reads it
/// back; then deletes the fork's own files. Returns whether the new file's data was de-duplicated.
fn fork_probe(dir: &Path) -> bool {
    let mut w = CimWriter::fork(dir, "child.cim", "probe.cim").unwrap();
    w.add(
        "Files\\again.txt",
        &FileMetadata {
            size: 5,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(b"small").unwrap();
    let stats = w.commit().unwrap();
    let probe = dir.join("probe.cim");
    let cim = Cim::open(&probe).unwrap();
    let mut s = String::new();
    cim.open_file("Files\\again.txt")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "small");
    let files = cimfs::image_files(&probe).unwrap();
    for f in files.regions.iter().chain(files.objectids.iter()) {
        fs::remove_file(f).unwrap();
    }
    fs::remove_file(&probe).unwrap();
    stats.dedup_hits == 1
}

#[test]
fn damaged_objectid_files_cost_only_deduplication() {
    // Objectid files are a write-side hint (hcsshim only warns when one is missing): a fork of an
    // image whose objectid files are cut or flipped anywhere must still write a correct image.
    let t = tempfile::tempdir().unwrap();
    build(t.path());
    assert!(fork_probe(t.path()), "intact objectid files de-duplicate");
    let oids: Vec<PathBuf> = image_files(t.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("objectid_")
        })
        .collect();
    assert_eq!(oids.len(), 6);
    let mut lost = 0;
    for file in &oids {
        let orig = fs::read(file).unwrap();
        // Every third damage position: each probe is a whole fork commit with fsyncs.
        for cut in positions(orig.len()).into_iter().step_by(3) {
            fs::write(file, &orig[..cut]).unwrap();
            if !fork_probe(t.path()) {
                lost += 1;
            }
        }
        for pos in positions(orig.len()).into_iter().skip(1).step_by(3) {
            let mut m = orig.clone();
            m[pos] ^= 0x80;
            fs::write(file, &m).unwrap();
            fork_probe(t.path());
        }
        fs::write(file, &orig).unwrap();
    }
    // Cutting the small region's objectid file loses the "small" object.
    assert!(lost > 0);
    assert!(fork_probe(t.path()));
}
