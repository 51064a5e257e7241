//! `verify` on images damaged on purpose, one kind of damage at a time: each problem is reported
//! with the file entry, security descriptor, EA chain, reparse buffer or link name it concerns
//! (file id and path) and the byte offset of the damaged field; an intact image with forks, hard
//! links, alternate streams and file and directory reparse points reports nothing.

use std::fs;
use std::path::{Path, PathBuf};

use cimfs::verify::{verify, verify_digests, Problem};
use cimfs::{format, Cim, CimWriter, FileMetadata};

const OFFSET_MASK: u64 = (1 << 48) - 1;

/// Self-relative SD: owner S-1-5-32-544 at 20, group S-1-5-18 at 36, a DACL at 48 with one
/// ACCESS_ALLOWED ACE for S-1-5-18.
const SD: [u8; 76] = [
    1, 0, 0x04, 0x80, 20, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 48, 0, 0, 0, // header
    1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0, // owner
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0, // group
    2, 0, 28, 0, 1, 0, 0, 0, // ACL header
    0, 0, 20, 0, 0xff, 0x01, 0x1f, 0x00, 1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0, // ACE
];

/// One FILE_FULL_EA_INFORMATION entry: "CIMKIT.TEST" = [1, 2, 3].
fn ea() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, 0, 11, 3, 0];
    v.extend_from_slice(b"CIMKIT.TEST\0");
    v.extend_from_slice(&[1, 2, 3]);
    v
}

const IO_REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;
const IO_REPARSE_TAG_MOUNT_POINT: u32 = 0xA000_0003;

/// A symbolic-link or mount-point REPARSE_DATA_BUFFER for `target` (absolute, `\??\` form).
fn link_buffer(tag: u32, target: &str) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let sub = utf16(&format!("\\??\\{target}"));
    let print = utf16(target);
    let mut data = Vec::new();
    // SubstituteName offset/length, PrintName offset/length (after the substitute name's NUL).
    for v in [0, sub.len(), sub.len() + 2, print.len()] {
        data.extend_from_slice(&(v as u16).to_le_bytes());
    }
    if tag == IO_REPARSE_TAG_SYMLINK {
        data.extend_from_slice(&0u32.to_le_bytes()); // Flags: absolute
    }
    data.extend_from_slice(&sub);
    data.extend_from_slice(&[0, 0]);
    data.extend_from_slice(&print);
    data.extend_from_slice(&[0, 0]);
    let mut b = tag.to_le_bytes().to_vec();
    b.extend_from_slice(&(data.len() as u16).to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&data);
    b
}

fn dir_meta() -> FileMetadata {
    FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    }
}

fn add_file(w: &mut CimWriter, path: &str, data: &[u8]) {
    w.add(
        path,
        &FileMetadata {
            size: data.len() as u64,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(data).unwrap();
}

fn add_stream(w: &mut CimWriter, path: &str, data: &[u8]) {
    w.add_alternate_stream(path, data.len() as u64).unwrap();
    w.write(data).unwrap();
}

/// Builds `base.cim` (every kind of entry) and its fork `child.cim` in `dir`.
fn build(dir: &Path) {
    let mut w = CimWriter::create(dir, "base.cim").unwrap();
    w.add("Files", &dir_meta()).unwrap();
    w.add(
        "Files\\a.txt",
        &FileMetadata {
            size: 5,
            security_descriptor: SD.to_vec(),
            extended_attributes: ea(),
            ..Default::default()
        },
    )
    .unwrap();
    w.write(b"hello").unwrap();
    add_stream(&mut w, "Files\\a.txt:one", b"111");
    add_stream(&mut w, "Files\\a.txt:two", b"222");
    w.add_link("Files\\hard.txt", "Files\\a.txt").unwrap();
    add_file(&mut w, "Files\\b.txt", b"bbbbb");
    add_file(&mut w, "Files\\c.txt", b"c");
    add_file(&mut w, "Files\\big.bin", &[7u8; 9000]);
    w.add(
        "Files\\sparse.bin",
        &FileMetadata {
            size: 100,
            ..Default::default()
        },
    )
    .unwrap();
    // Every attribute the format can hold, so every defined flag bit is set.
    w.add(
        "Files\\flags.txt",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_READONLY
                | format::FILE_ATTRIBUTE_HIDDEN
                | format::FILE_ATTRIBUTE_SYSTEM
                | format::FILE_ATTRIBUTE_ARCHIVE
                | format::FILE_ATTRIBUTE_SPARSE_FILE,
            ..Default::default()
        },
    )
    .unwrap();
    w.add(
        "Files\\link",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_REPARSE_POINT,
            reparse_data: link_buffer(IO_REPARSE_TAG_SYMLINK, "C:\\Files\\a.txt"),
            ..Default::default()
        },
    )
    .unwrap();
    w.add(
        "Files\\junction",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY | format::FILE_ATTRIBUTE_REPARSE_POINT,
            reparse_data: link_buffer(IO_REPARSE_TAG_MOUNT_POINT, "C:\\ProgramData"),
            ..Default::default()
        },
    )
    .unwrap();
    // Supplementary characters (surrogate pairs) and noncharacters are names a lookup finds.
    add_file(&mut w, "Files\\\u{fc}nic\u{f6}de \u{1F600}.txt", b"u");
    add_file(&mut w, "Files\\nonchar \u{FDD0}\u{FFFE}\u{FFFF}", b"n");
    add_file(&mut w, "Files\\Mixed.TXT", b"m");
    w.add("Three", &dir_meta()).unwrap();
    for n in ["alpha", "bravo", "charlie"] {
        add_file(&mut w, &format!("Three\\{n}"), n.as_bytes());
    }
    w.add("Twins", &dir_meta()).unwrap();
    add_file(&mut w, "Twins\\twin1", b"1");
    add_file(&mut w, "Twins\\twin2", b"2");
    w.add("empty", &dir_meta()).unwrap();
    w.commit().unwrap();

    let mut c = CimWriter::fork(dir, "base.cim", "child.cim").unwrap();
    add_file(&mut c, "Files\\new.txt", b"new");
    add_stream(&mut c, "Files\\new.txt:zone", b"z");
    c.add_link("Files\\hard2.txt", "Files\\b.txt").unwrap();
    c.remove("Files\\c.txt").unwrap();
    c.add(
        "Files\\junction2",
        &FileMetadata {
            attributes: 0x410,
            reparse_data: link_buffer(IO_REPARSE_TAG_MOUNT_POINT, "D:\\"),
            ..Default::default()
        },
    )
    .unwrap();
    c.commit().unwrap();
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The base image, its metadata region and that region's bytes, damaged and restored per check.
struct Fixture {
    _tmp: tempfile::TempDir,
    cim: PathBuf,
    meta_path: PathBuf,
    meta: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let cim = tmp.path().join("base.cim");
        let meta_path = cimfs::image_files(&cim).unwrap().regions[0].clone();
        let meta = fs::read(&meta_path).unwrap();
        Fixture {
            _tmp: tmp,
            cim,
            meta_path,
            meta,
        }
    }

    fn id(&self, path: &str) -> u32 {
        Cim::open(&self.cim).unwrap().lookup(path).unwrap()
    }

    /// "file ID (\PATH)", how verify names a file.
    fn object(&self, path: &str) -> String {
        format!("file {} (\\{path})", self.id(path))
    }

    /// Byte offset of file `id`'s entry: the filesystem object is the region's last 24 bytes
    /// and points at the file table directory.
    fn entry(&self, path: &str) -> usize {
        let m = &self.meta;
        let slot = (self.id(path) - 1) as usize;
        let ftd = (le64(m, m.len() - 0x18 + 8) & OFFSET_MASK) as usize;
        let t = ftd + 16 * (slot / 1024);
        let size = usize::from(le16(m, t + 10));
        (le64(m, t) & OFFSET_MASK) as usize + (slot % 1024) * size
    }

    /// Byte offset of the object a region offset field of `path`'s entry points at.
    fn pointed(&self, path: &str, field: usize) -> usize {
        (le64(&self.meta, self.entry(path) + field) & OFFSET_MASK) as usize
    }

    /// Byte offset of the only stored u16-counted name `name` (its length field).
    fn name(&self, name: &str) -> usize {
        let mut needle = (name.encode_utf16().count() as u16).to_le_bytes().to_vec();
        needle.extend(name.encode_utf16().flat_map(u16::to_le_bytes));
        let hits: Vec<usize> = self
            .meta
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle.as_slice())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits.len(), 1, "{name:?} stored once");
        hits[0]
    }

    /// Verifies the image with `damage` applied to its metadata region, then restores it.
    fn verify_damaged(&self, damage: impl FnOnce(&mut Vec<u8>)) -> Vec<Problem> {
        let mut m = self.meta.clone();
        damage(&mut m);
        assert_ne!(m, self.meta, "the damage changes something");
        fs::write(&self.meta_path, &m).unwrap();
        let problems = verify(&self.cim);
        fs::write(&self.meta_path, &self.meta).unwrap();
        problems
    }

    /// Asserts a problem in the metadata region about `object` at `offset` whose message holds `needle`.
    fn expect(&self, problems: &[Problem], object: &str, offset: usize, needle: &str) {
        assert!(
            problems.iter().any(|p| p.file == self.meta_path
                && p.object.starts_with(object)
                && p.offset == Some(offset as u64)
                && p.message.contains(needle)),
            "no problem for {object:?} at {offset:#x} saying {needle:?}:\n{}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn put(m: &mut [u8], at: usize, bytes: &[u8]) {
    m[at..at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn intact_images_with_links_streams_and_reparse_points_verify_clean() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    for name in ["base.cim", "child.cim"] {
        let cim = tmp.path().join(name);
        let problems = verify(&cim);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        let digests = verify_digests(&cim);
        assert!(digests.is_empty(), "{name}: {digests:#?}");
    }
    // What the checks must accept is really in the images.
    let child = Cim::open(&tmp.path().join("child.cim")).unwrap();
    for j in ["Files\\junction", "Files\\junction2"] {
        let info = child.stat(j).unwrap();
        assert_eq!(info.attributes, 0x410, "{j}");
        assert_eq!(info.reparse_tag, IO_REPARSE_TAG_MOUNT_POINT);
    }
    assert_eq!(
        child.stat("Files\\link").unwrap().reparse_tag,
        IO_REPARSE_TAG_SYMLINK
    );
    assert_eq!(child.stat("Files\\flags.txt").unwrap().attributes, 0x227);
    assert_eq!(
        child.lookup("Files\\hard2.txt").unwrap(),
        child.lookup("Files\\b.txt").unwrap()
    );
    assert_eq!(
        child
            .streams_id(child.lookup("Files\\a.txt").unwrap())
            .unwrap()
            .len(),
        2
    );
    child
        .lookup("Files\\nonchar \u{FDD0}\u{FFFE}\u{FFFF}")
        .unwrap();
    child
        .lookup("Files\\\u{dc}NIC\u{d6}DE \u{1F600}.TXT")
        .unwrap();
}

#[test]
fn reparse_tag_without_a_buffer_and_buffer_without_the_tag() {
    let f = Fixture::new();
    let b = f.entry("Files\\b.txt");
    let p = f.verify_damaged(|m| put(m, b + 4, &IO_REPARSE_TAG_SYMLINK.to_le_bytes()));
    f.expect(&p, &f.object("Files\\b.txt"), b + 4, "no reparse buffer");

    // The reverse: a buffer whose entry lost its tag.
    let link = f.entry("Files\\link");
    let p = f.verify_damaged(|m| put(m, link + 4, &[0; 4]));
    f.expect(&p, &f.object("Files\\link"), link + 4, "differs");

    // A directory reparse point likewise.
    let j = f.entry("Files\\junction");
    let p = f.verify_damaged(|m| put(m, j + 4, &[0; 4]));
    f.expect(&p, &f.object("Files\\junction"), j + 4, "differs");

    // A buffer whose count leaves less than its own 8-byte header.
    let rp = f.pointed("Files\\link", 0x48);
    let p = f.verify_damaged(|m| put(m, rp, &6u16.to_le_bytes()));
    f.expect(
        &p,
        &f.object("Files\\link"),
        rp,
        "shorter than its 8-byte header",
    );
}

#[test]
fn flag_and_stream_bits_the_format_does_not_define() {
    let f = Fixture::new();
    let b = f.entry("Files\\b.txt");
    for flags in [0x0020u16, 0x0100, 0x8008] {
        let p = f.verify_damaged(|m| put(m, b, &flags.to_le_bytes()));
        f.expect(&p, &f.object("Files\\b.txt"), b, "does not define");
    }
    // Bit 60 of the default stream's LengthAndType (byte 7 of the field at 0x30).
    let p = f.verify_damaged(|m| m[b + 0x37] |= 0x10);
    f.expect(&p, &f.object("Files\\b.txt"), b + 0x30, "bits 57-63");
    // Bit 59 of the first alternate stream's descriptor in a.txt's stream table.
    let st = f.pointed("Files\\a.txt", 0x50);
    let p = f.verify_damaged(|m| m[st + 8 + 15] |= 0x08);
    f.expect(
        &p,
        &format!("stream \"one\" of {}", f.object("Files\\a.txt")),
        st + 8 + 8,
        "bits 57-63",
    );
}

#[test]
fn security_descriptors_that_are_not_self_relative_sds() {
    let f = Fixture::new();
    let a = f.object("Files\\a.txt");
    let sd = f.pointed("Files\\a.txt", 0x38);
    assert_eq!(&f.meta[sd..sd + 2], &(SD.len() as u16).to_le_bytes());
    assert_eq!(&f.meta[sd + 2..sd + 2 + SD.len()], &SD);
    let body = sd + 2;
    for (what, at, bytes, needle) in [
        ("revision", 0, &[2u8][..], "revision"),
        ("control", 3, &[0x00][..], "self-relative"),
        ("owner offset", 4, &[200][..], "owner offset"),
        ("group SID revision", 36, &[9][..], "group SID"),
        ("DACL offset", 16, &[40][..], "DACL"),
        ("ACL revision", 48, &[7][..], "ACL revision 7"),
        ("ACE count", 52, &[2][..], "ACE 1 of 2"),
        ("ACE size", 58, &[0x30][..], "ACE 0 at 8 has size 48"),
    ] {
        let p = f.verify_damaged(|m| put(m, body + at, bytes));
        assert!(!p.is_empty(), "{what}");
        f.expect(&p, &a, sd, needle);
    }
    // The count cut below the 20-byte header.
    let p = f.verify_damaged(|m| put(m, sd, &12u16.to_le_bytes()));
    f.expect(&p, &a, sd, "shorter than its 20-byte header");
    // No descriptor at all.
    let b = f.entry("Files\\b.txt");
    let p = f.verify_damaged(|m| put(m, b + 0x38, &[0; 8]));
    f.expect(
        &p,
        &f.object("Files\\b.txt"),
        b + 0x38,
        "no security descriptor",
    );
}

#[test]
fn ea_chains_that_are_malformed() {
    let f = Fixture::new();
    let a = f.object("Files\\a.txt");
    let ea_at = f.pointed("Files\\a.txt", 0x40);
    assert_eq!(&f.meta[ea_at..ea_at + 23], &ea()[..]);
    for (what, at, bytes, needle) in [
        ("name terminator", 8 + 11, &[b'X'][..], "NUL-terminated"),
        ("next entry offset", 0, &[4, 0, 0, 0][..], "NextEntryOffset"),
        ("name length", 5, &[0][..], "name length 0"),
        ("value length", 6, &[0x40, 0][..], "runs past"),
    ] {
        let p = f.verify_damaged(|m| put(m, ea_at + at, bytes));
        assert!(!p.is_empty(), "{what}");
        f.expect(&p, &a, ea_at, needle);
    }
    // An EA offset with no EA bytes.
    let e = f.entry("Files\\a.txt");
    let p = f.verify_damaged(|m| put(m, e + 2, &[0, 0]));
    f.expect(&p, &a, e + 2, "EA length 0");
}

#[test]
fn link_names_windows_cannot_hold() {
    let f = Fixture::new();
    let bravo = f.name("bravo");
    let id = f.id("Three\\bravo");
    // Replace the 'r' (unit 1): the first unit still decides the sort order.
    for (unit, needle) in [
        (0xD800u16, "unpaired surrogate 0xd800"),
        (0xDC00, "unpaired surrogate 0xdc00"),
        (0, "holds a NUL character"),
        (u16::from(b'\\'), "holds a backslash (\\)"),
        (u16::from(b'/'), "holds a slash (/)"),
        (u16::from(b':'), "holds a colon (:)"),
    ] {
        let p = f.verify_damaged(|m| put(m, bravo + 4, &unit.to_le_bytes()));
        f.expect(&p, &format!("file {id} (\\Three\\b"), bravo, needle);
    }
    // A name cut to ".".
    let p = f.verify_damaged(|m| {
        put(m, bravo, &1u16.to_le_bytes());
        put(m, bravo + 2, &u16::from(b'.').to_le_bytes());
    });
    f.expect(
        &p,
        &format!("file {id} (\\Three\\.)"),
        bravo,
        "no file may be named",
    );

    // Alternate stream names: a ':' in "two".
    let two = f.name("two");
    let p = f.verify_damaged(|m| put(m, two + 4, &u16::from(b':').to_le_bytes()));
    f.expect(
        &p,
        &format!("stream \"t:o\" of {}", f.object("Files\\a.txt")),
        two,
        "holds a colon (:)",
    );
}

#[test]
fn links_a_lookup_of_their_own_path_cannot_find() {
    let f = Fixture::new();
    // "alpha" -> "zlpha": first in the table but last in order; a binary search never reaches it.
    let alpha = f.name("alpha");
    let id = f.id("Three\\alpha");
    let p = f.verify_damaged(|m| put(m, alpha + 2, &u16::from(b'z').to_le_bytes()));
    f.expect(
        &p,
        &format!("file {id} (\\Three\\zlpha)"),
        alpha,
        "finds nothing",
    );
    assert!(
        !p.iter()
            .any(|p| p.object.contains("bravo") || p.object.contains("charlie")),
        "{p:#?}"
    );
    // The reader agrees.
    let mut m = f.meta.clone();
    put(&mut m, alpha + 2, &u16::from(b'z').to_le_bytes());
    fs::write(&f.meta_path, &m).unwrap();
    let cim = Cim::open(&f.cim).unwrap();
    assert!(cim.lookup("Three\\zlpha").is_err());
    assert!(cim.lookup("Three\\bravo").is_ok());
    fs::write(&f.meta_path, &f.meta).unwrap();

    // "twin2" -> "TWIN1": equal ignoring case to its sibling; the search finds only one of them.
    let (id1, id2) = (f.id("Twins\\twin1"), f.id("Twins\\twin2"));
    let twin2 = f.name("twin2");
    let twin1 = f.name("twin1");
    let p = f.verify_damaged(|m| {
        for (i, u) in "TWIN1".encode_utf16().enumerate() {
            put(m, twin2 + 2 + 2 * i, &u.to_le_bytes());
        }
    });
    f.expect(
        &p,
        &format!("file {id1} (\\Twins\\twin1)"),
        twin1,
        &format!("finds file {id2}"),
    );
    let mut m = f.meta.clone();
    for (i, u) in "TWIN1".encode_utf16().enumerate() {
        put(&mut m, twin2 + 2 + 2 * i, &u.to_le_bytes());
    }
    fs::write(&f.meta_path, &m).unwrap();
    assert_eq!(
        Cim::open(&f.cim).unwrap().lookup("Twins\\twin1").unwrap(),
        id2
    );
    fs::write(&f.meta_path, &f.meta).unwrap();

    // Stream "two" -> "ONE": a stream lookup takes the first name equal ignoring case.
    let two = f.name("two");
    let p = f.verify_damaged(|m| {
        for (i, u) in "ONE".encode_utf16().enumerate() {
            put(m, two + 2 + 2 * i, &u.to_le_bytes());
        }
    });
    f.expect(
        &p,
        &format!("stream \"ONE\" of {}", f.object("Files\\a.txt")),
        two,
        "finds stream 0",
    );
}

/// A junction or directory symlink with entries beneath it (which NTFS cannot hold) is reported,
/// with its path and how many entries it has; the writer says where the nearest one above a path
/// is, parents' entries included, and a reparse point that is not a name surrogate is not one.
#[test]
fn directory_reparse_points_with_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = CimWriter::create(dir, "base.cim").unwrap();
    w.add("Files", &dir_meta()).unwrap();
    w.add(
        "Files\\jct",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY | format::FILE_ATTRIBUTE_REPARSE_POINT,
            reparse_data: link_buffer(IO_REPARSE_TAG_MOUNT_POINT, "C:\\ProgramData"),
            ..Default::default()
        },
    )
    .unwrap();
    // A directory with a tag that is not a name surrogate (0x9000001A, cloud files) may hold
    // entries on NTFS.
    let mut cloud = 0x9000_001Au32.to_le_bytes().to_vec();
    cloud.extend_from_slice(&[0, 0, 0, 0]);
    w.add(
        "Files\\cloud",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY | format::FILE_ATTRIBUTE_REPARSE_POINT,
            reparse_data: cloud,
            ..Default::default()
        },
    )
    .unwrap();
    add_file(&mut w, "Files\\cloud\\kept.txt", b"k");
    assert_eq!(
        w.reparse_point_above("Files\\jct\\x.txt").as_deref(),
        Some("Files\\jct")
    );
    assert_eq!(
        w.reparse_point_above("files/JCT/deeper/x.txt").as_deref(),
        Some("files\\JCT")
    );
    assert_eq!(w.reparse_point_above("Files\\jct"), None);
    assert_eq!(w.reparse_point_above("Files\\cloud\\kept.txt"), None);
    w.commit().unwrap();
    assert_eq!(verify(&dir.join("base.cim")), vec![]);

    // The writer itself does not refuse entries beneath one: verify reports them.
    let mut c = CimWriter::fork(dir, "base.cim", "child.cim").unwrap();
    assert_eq!(
        c.reparse_point_above("Files\\jct\\a\\b").as_deref(),
        Some("Files\\jct")
    );
    add_file(&mut c, "Files\\jct\\x.txt", b"x");
    add_file(&mut c, "Files\\jct\\y.txt", b"y");
    c.commit().unwrap();
    let problems = verify(&dir.join("child.cim"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].object, "directory \\Files\\jct");
    assert!(
        problems[0].message.contains("junction") && problems[0].message.contains("has 2 entries"),
        "{}",
        problems[0].message
    );
}
