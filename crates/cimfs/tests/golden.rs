//! Byte-exact layout of a tiny image against cim-format.md: the .cim header (also a fork's, with
//! its parent region sets), region and objectid headers, the metadata region layout, a file entry
//! (flags, EA and reparse blobs), a link table, a stream table; plus hand-built PE image streams
//! and file tables with v1 (0x58) and v3 (0x68) entry sizes.

use std::fs;
use std::io::Read;
use std::path::Path;

use cimfs::{format, Cim, CimWriter, FileMetadata};

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn guid_of(cim: &Path) -> [u8; 16] {
    let b = fs::read(cim).unwrap();
    b[0x20..0x30].try_into().unwrap()
}

fn file_name(prefix: &str, guid: &[u8; 16], i: u16) -> String {
    format!("{prefix}_{}_{i}", format::Guid(*guid).to_file_string())
}

/// One file "a.txt" = "abc" with archive attribute and times 1..4.
fn tiny(dir: &Path) -> std::path::PathBuf {
    let mut w = CimWriter::create(dir, "tiny.cim").unwrap();
    let meta = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_ARCHIVE,
        size: 3,
        creation_time: 1,
        last_write_time: 2,
        change_time: 3,
        last_access_time: 4,
        ..Default::default()
    };
    w.add("a.txt", &meta).unwrap();
    w.write(b"abc").unwrap();
    w.commit().unwrap();
    dir.join("tiny.cim")
}

#[test]
fn cim_header_bytes() {
    let t = tempfile::tempdir().unwrap();
    let cim = tiny(t.path());
    let b = fs::read(&cim).unwrap();
    assert_eq!(b.len(), 0x48);
    let guid = guid_of(&cim);
    let mut want = Vec::new();
    want.extend_from_slice(b"cimfile0");
    want.extend_from_slice(&0x48u32.to_le_bytes()); // HeaderLength
    want.extend_from_slice(&[0, 0, 0, 0]); // Type 0 (image), reserved
    want.extend_from_slice(&2u32.to_le_bytes()); // Major
    want.extend_from_slice(&0u32.to_le_bytes()); // Minor
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&guid); // RegionSet.ID
    want.extend_from_slice(&3u16.to_le_bytes()); // Count
    want.extend_from_slice(&[0; 6]);
    want.extend_from_slice(&le64(0x20130)); // FilesystemOffset: metadata region 0 + 0x20130
    want.extend_from_slice(&[0; 6]);
    want.extend_from_slice(&0u16.to_le_bytes()); // ParentCount
    assert_eq!(b, want);
    // GUID text form used in file names: Data1 as a little-endian u32, lower-case, hyphenated.
    let name = file_name("region", &guid, 0);
    assert!(t.path().join(&name).exists(), "{name}");
    let d1 = u32::from_le_bytes(guid[0..4].try_into().unwrap());
    assert!(name.starts_with(&format!("region_{d1:08x}-")), "{name}");
}

#[test]
fn region_and_objectid_headers() {
    let t = tempfile::tempdir().unwrap();
    let cim = tiny(t.path());
    let guid = guid_of(&cim);
    for (i, ty) in [(0u16, 0u8), (1, 1), (2, 2)] {
        let r = fs::read(t.path().join(file_name("region", &guid, i))).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(b"cimfile0");
        want.extend_from_slice(&0x28u32.to_le_bytes());
        want.extend_from_slice(&[1, 0, 0, 0]); // Type 1 (region)
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&i.to_le_bytes());
        want.extend_from_slice(&[ty, 0, 0, 0, 0, 0]);
        assert_eq!(&r[..0x28], &want[..], "region {i}");
        let o = fs::read(t.path().join(file_name("objectid", &guid, i))).unwrap();
        let count: u32 = if i == 2 { 1 } else { 0 };
        let mut want = Vec::new();
        want.extend_from_slice(b"cimfile0");
        want.extend_from_slice(&0x30u32.to_le_bytes());
        want.extend_from_slice(&[2, 0, 0, 0]); // Type 2 (objectid)
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&i.to_le_bytes());
        want.extend_from_slice(&[ty, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&0x30u32.to_le_bytes()); // TableOffset
        want.extend_from_slice(&count.to_le_bytes());
        assert_eq!(&o[..0x30], &want[..], "objectid {i}");
        assert_eq!(o.len(), 0x30 + 40 * count as usize);
        if count == 1 {
            // The "abc" object: length 3, SHA-256 truncated to 24 bytes, offset 0x28 in the small region.
            assert_eq!(&o[0x30..0x38], &le64(3));
            assert_eq!(&o[0x50..0x58], &le64(0x28));
            assert_eq!(
                hex(&o[0x38..0x50]),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9c"
            );
        }
    }
    // Small data lives 8-byte aligned right after the small region's header.
    let small = fs::read(t.path().join(file_name("region", &guid, 2))).unwrap();
    assert_eq!(&small[0x28..], b"abc");
    // The data region has only its header.
    assert_eq!(
        fs::metadata(t.path().join(file_name("region", &guid, 1)))
            .unwrap()
            .len(),
        0x28
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn metadata_region_layout() {
    let t = tempfile::tempdir().unwrap();
    let cim = tiny(t.path());
    let guid = guid_of(&cim);
    let m = fs::read(t.path().join(file_name("region", &guid, 0))).unwrap();
    // Upcase table at 0x28 (128 KiB).
    let up: Vec<u8> = upcase::table()
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    assert_eq!(&m[0x28..0x20028], &up[..]);
    // The null-DACL SD, u16-counted, at 0x20028.
    assert_eq!(&m[0x20028..0x2002a], &20u16.to_le_bytes());
    assert_eq!(&m[0x2002a..0x2003e], &format::NULL_DACL_SD);
    // Root directory link table at 0x20040: Length, Count, ids, name offsets, names.
    let mut lt = Vec::new();
    lt.extend_from_slice(&0x1cu32.to_le_bytes());
    lt.extend_from_slice(&1u32.to_le_bytes());
    lt.extend_from_slice(&2u32.to_le_bytes()); // file id of a.txt
    lt.extend_from_slice(&0x10u32.to_le_bytes()); // name offset from the table start
    lt.extend_from_slice(&5u16.to_le_bytes());
    for u in "a.txt".encode_utf16() {
        lt.extend_from_slice(&u.to_le_bytes());
    }
    assert_eq!(&m[0x20040..0x2005c], &lt[..]);
    // File table (2 entries of 0x60) at 0x20060.
    let mut root = Vec::new();
    root.extend_from_slice(&[0; 8]); // flags, EaLength, ReparseTag
    root.extend_from_slice(&[0; 32]); // times
    root.extend_from_slice(&le64(0x20040));
    root.extend_from_slice(&le64(0x1c | (1 << 48))); // link table stream
    root.extend_from_slice(&le64(0x20028)); // SD
    root.extend_from_slice(&[0; 24]); // EA, reparse, stream table
    root.extend_from_slice(&1u32.to_le_bytes()); // ParentFileId (root names itself)
    root.extend_from_slice(&[0; 4]); // BaseRegionIndex, reserved
    assert_eq!(&m[0x20060..0x200c0], &root[..]);
    let mut file = Vec::new();
    file.extend_from_slice(&8u16.to_le_bytes()); // Archive flag
    file.extend_from_slice(&[0; 6]);
    for v in 1..=4u64 {
        file.extend_from_slice(&le64(v));
    }
    file.extend_from_slice(&le64((2 << 48) | 0x28)); // small region (index 2) + 0x28
    file.extend_from_slice(&le64(3));
    file.extend_from_slice(&le64(0x20028));
    file.extend_from_slice(&[0; 24]);
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&[0; 4]);
    assert_eq!(&m[0x200c0..0x20120], &file[..]);
    // File table directory at 0x20120 and the filesystem object at 0x20130.
    let mut ftd = Vec::new();
    ftd.extend_from_slice(&le64(0x20060));
    ftd.extend_from_slice(&2u16.to_le_bytes());
    ftd.extend_from_slice(&0x60u16.to_le_bytes());
    ftd.extend_from_slice(&[0; 4]);
    assert_eq!(&m[0x20120..0x20130], &ftd[..]);
    let mut fs_obj = Vec::new();
    fs_obj.extend_from_slice(&le64(0x28));
    fs_obj.extend_from_slice(&le64(0x20120));
    fs_obj.extend_from_slice(&1u32.to_le_bytes());
    fs_obj.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(&m[0x20130..0x20148], &fs_obj[..]);
    assert_eq!(m.len(), 0x20148);
}

#[test]
fn link_table_sorted_by_upcase() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "s.cim").unwrap();
    let dir = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    };
    // Upcased: "B", "A", "Á" (U+00C1), "[" (0x5B sorts after 'Z' 0x5A but before 'a'... upcased 'a'='A').
    for n in ["b", "A", "á", "[", "Ab"] {
        w.add(n, &dir).unwrap();
    }
    w.commit().unwrap();
    let cim = Cim::open(&t.path().join("s.cim")).unwrap();
    let names: Vec<String> = cim
        .read_dir("")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["A", "Ab", "b", "[", "á"]);
}

/// Builds a PE image stream by hand: the expanded image is written as ordinary data, then a
/// PeImage descriptor with mappings is appended to the metadata region and the file entry's
/// default stream is pointed at it (type 2, logical length).
#[test]
fn reads_hand_built_pe_image_stream() {
    let t = tempfile::tempdir().unwrap();
    // Logical file: 0x400 header, two 0x200 sections. Expanded: header page, sections at 0x1000, 0x2000.
    let header: Vec<u8> = (0..0x400u32).map(|i| (i % 7) as u8 + 1).collect();
    let s1 = vec![0xAAu8; 0x200];
    let s2: Vec<u8> = (0..0x200u32).map(|i| (i % 13) as u8 + 100).collect();
    let logical: Vec<u8> = [header.clone(), s1.clone(), s2.clone()].concat();
    let mut expanded = vec![0u8; 0x2200];
    expanded[..0x400].copy_from_slice(&header);
    expanded[0x1000..0x1200].copy_from_slice(&s1);
    expanded[0x2000..0x2200].copy_from_slice(&s2);

    let mut w = CimWriter::create(t.path(), "pe.cim").unwrap();
    let meta = FileMetadata {
        size: expanded.len() as u64,
        ..Default::default()
    };
    w.add("app.exe", &meta).unwrap();
    w.write(&expanded).unwrap();
    w.commit().unwrap();
    let cim_path = t.path().join("pe.cim");
    let (entry_file, entry_off, data_offset) = {
        let cim = Cim::open(&cim_path).unwrap();
        let id = cim.lookup("app.exe").unwrap();
        locate_entry(&cim_path, id)
    };
    let meta_region = entry_file;
    let mut m = fs::read(&meta_region).unwrap();
    // The table itself 8-byte aligned (as the driver wants link tables), so its count at 4 mod 8.
    while m.len() % 8 != 4 {
        m.push(0);
    }
    let desc_at = m.len() as u64;
    m.extend_from_slice(&le64(data_offset)); // DataOffset: the expanded bytes
    m.extend_from_slice(&le64(expanded.len() as u64)); // DataLength
    m.extend_from_slice(&(expanded.len() as u32).to_le_bytes()); // ImageLength
    m.extend_from_slice(&3u16.to_le_bytes()); // MappingCount
    m.extend_from_slice(&format::PE_IMAGE_FLAG_VALID.to_le_bytes());
    for (fo, delta) in [
        (0u32, 0u32),
        (0x400, 0x1000 - 0x400),
        (0x600, 0x2000 - 0x600),
    ] {
        m.extend_from_slice(&fo.to_le_bytes());
        m.extend_from_slice(&delta.to_le_bytes());
    }
    let stream_at = entry_off as usize + 0x28;
    m[stream_at..stream_at + 8].copy_from_slice(&le64(desc_at)); // metadata region is index 0
    m[stream_at + 8..stream_at + 16].copy_from_slice(&le64(logical.len() as u64 | (2 << 48)));
    fs::write(&meta_region, &m).unwrap();

    let cim = Cim::open(&cim_path).unwrap();
    let info = cim.stat("app.exe").unwrap();
    assert!(info.pe_image);
    assert_eq!(info.size, logical.len() as u64);
    let mut got = Vec::new();
    cim.open_file("app.exe")
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, logical);
    // Reads that straddle segment boundaries.
    let id = cim.lookup("app.exe").unwrap();
    for (off, len) in [(0x3f0u64, 0x20usize), (0x5ff, 2), (0x1, 0x7ff), (0x7ff, 10)] {
        let mut buf = vec![0u8; len];
        let n = cim.read_at(id, None, off, &mut buf).unwrap();
        let end = (off as usize + len).min(logical.len());
        assert_eq!(&buf[..n], &logical[off as usize..end], "read at {off:#x}");
    }
    assert!(cimfs::verify::verify(&cim_path).is_empty());

    // DataLength bit 63 is masked off by readers (cim-format.md §A7): setting it changes nothing.
    let d = desc_at as usize;
    let mut flagged = m.clone();
    flagged[d + 8..d + 16].copy_from_slice(&le64(expanded.len() as u64 | (1 << 63)));
    fs::write(&meta_region, &flagged).unwrap();
    let cim = Cim::open(&cim_path).unwrap();
    let mut again = Vec::new();
    cim.open_file("app.exe")
        .unwrap()
        .read_to_end(&mut again)
        .unwrap();
    assert_eq!(again, logical);

    // A MappingCount whose table runs past the region: an error naming the mappings, not a read.
    let mut damaged = m.clone();
    damaged[d + 0x14..d + 0x16].copy_from_slice(&0xffffu16.to_le_bytes());
    fs::write(&meta_region, &damaged).unwrap();
    let cim = Cim::open(&cim_path).unwrap();
    match cim.read_at(id, None, 0, &mut [0u8; 16]) {
        Err(cimfs::Error::Corrupt { object, offset, .. }) => {
            assert_eq!(object, format!("PE image mappings of file {id}"));
            assert_eq!(offset, desc_at + 0x18);
        }
        other => panic!("expected a corrupt mapping table, got {other:?}"),
    }
    // A descriptor pointing past the region: the stat still works, reads fail cleanly.
    let mut damaged = m.clone();
    damaged[stream_at..stream_at + 8].copy_from_slice(&le64(desc_at + 0x10_0000));
    fs::write(&meta_region, &damaged).unwrap();
    let cim = Cim::open(&cim_path).unwrap();
    assert!(cim.stat("app.exe").unwrap().pe_image);
    assert!(matches!(
        cim.read_at(id, None, 0, &mut [0u8; 16]),
        Err(cimfs::Error::Corrupt { .. })
    ));
    assert!(!cimfs::verify::verify(&cim_path).is_empty());
}

/// Finds the metadata region file, the byte offset of file `id`'s entry in it, and the entry's data offset.
fn locate_entry(cim_path: &Path, id: u32) -> (std::path::PathBuf, u64, u64) {
    let guid = guid_of(cim_path);
    let dir = cim_path.parent().unwrap();
    let region = dir.join(file_name("region", &guid, 0));
    let m = fs::read(&region).unwrap();
    let hdr = fs::read(cim_path).unwrap();
    let fs_off = u64::from_le_bytes(hdr[0x38..0x40].try_into().unwrap()) & 0xffff_ffff_ffff;
    let rd = |o: u64| u64::from_le_bytes(m[o as usize..o as usize + 8].try_into().unwrap());
    let ftd = rd(fs_off + 8) & 0xffff_ffff_ffff;
    let table = rd(ftd) & 0xffff_ffff_ffff;
    let entry = table + u64::from(id - 1) * 0x60;
    (region, entry, rd(entry + 0x28))
}

#[test]
fn stream_table_bytes() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "ads.cim").unwrap();
    w.add(
        "f",
        &FileMetadata {
            size: 0,
            ..Default::default()
        },
    )
    .unwrap();
    w.add_alternate_stream("f:zone:$DATA", 3).unwrap();
    w.write(b"xyz").unwrap();
    w.commit().unwrap();
    let cim_path = t.path().join("ads.cim");
    let (region, entry, data) = locate_entry(&cim_path, 2);
    // The empty default stream: length 0, type Data, at the small region's first object (a
    // real offset: hcsshim's reader refuses a null one even for 0 bytes).
    assert_eq!((data >> 48, data & 0xffff_ffff_ffff), (2, 0x28));
    let m = fs::read(&region).unwrap();
    let rd = |o: u64| u64::from_le_bytes(m[o as usize..o as usize + 8].try_into().unwrap());
    assert_eq!(rd(entry + 0x30), 0);
    let st = rd(entry + 0x50);
    assert_eq!(st >> 48, 0, "stream table lives in the metadata region");
    assert_eq!(st % 8, 0, "stream table is 8-byte aligned");
    let mut want = Vec::new();
    want.extend_from_slice(&0x26u32.to_le_bytes()); // Length: 8 + 16 + 4 + 2 + 8
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&le64((2 << 48) | 0x28)); // Stream.DataOffset: small region + 0x28
    want.extend_from_slice(&le64(3)); // length 3, type Data
    want.extend_from_slice(&0x1cu32.to_le_bytes()); // name offset
    want.extend_from_slice(&4u16.to_le_bytes());
    for u in "zone".encode_utf16() {
        want.extend_from_slice(&u.to_le_bytes());
    }
    assert_eq!(&m[st as usize..st as usize + want.len()], &want[..]);
    let cim = Cim::open(&cim_path).unwrap();
    let mut s = String::new();
    cim.open_stream("f", "Zone")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "xyz");
}

/// The stream table layout hcsshim's Go reader parses (a u32 byte count, then the table) is
/// read too: the file's StreamTableOffset is pointed at such a copy appended to the region.
#[test]
fn stream_table_behind_a_size_prefix_is_read() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "ads.cim").unwrap();
    w.add("f", &FileMetadata::default()).unwrap();
    w.add_alternate_stream("f:zone", 3).unwrap();
    w.write(b"xyz").unwrap();
    w.commit().unwrap();
    let cim_path = t.path().join("ads.cim");
    let (region, entry, _) = locate_entry(&cim_path, 2);
    let mut m = fs::read(&region).unwrap();
    let st = u64::from_le_bytes(
        m[entry as usize + 0x50..entry as usize + 0x58]
            .try_into()
            .unwrap(),
    );
    let len = u32::from_le_bytes(m[st as usize..st as usize + 4].try_into().unwrap()) as usize;
    let table = m[st as usize..st as usize + len].to_vec();
    // The table itself 8-byte aligned (as the driver wants link tables), so its count at 4 mod 8.
    while m.len() % 8 != 4 {
        m.push(0);
    }
    let copy = m.len() as u64;
    m.extend_from_slice(&(len as u32).to_le_bytes());
    m.extend_from_slice(&table);
    m[entry as usize + 0x50..entry as usize + 0x58].copy_from_slice(&le64(copy));
    fs::write(&region, &m).unwrap();
    let cim = Cim::open(&cim_path).unwrap();
    let mut s = String::new();
    cim.open_stream("f", "zone")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "xyz");
    let problems = cimfs::verify::verify(&cim_path);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn fork_header_lists_parent_region_sets_oldest_first() {
    let t = tempfile::tempdir().unwrap();
    tiny(t.path());
    for (parent, name) in [("tiny.cim", "f1.cim"), ("f1.cim", "f2.cim")] {
        let mut w = CimWriter::fork(t.path(), parent, name).unwrap();
        w.add(&format!("{name}.txt"), &FileMetadata::default())
            .unwrap();
        w.commit().unwrap();
    }
    let g0 = guid_of(&t.path().join("tiny.cim"));
    let g1 = guid_of(&t.path().join("f1.cim"));
    let b = fs::read(t.path().join("f2.cim")).unwrap();
    assert_eq!(b.len(), 0x48 + 2 * 0x18);
    // HeaderLength (meaning unknown, no reader checks it): the whole header, parents included.
    assert_eq!(&b[0x08..0x0c], &0x78u32.to_le_bytes());
    assert_eq!(&b[0x30..0x32], &3u16.to_le_bytes()); // own RegionSet.Count
    assert_eq!(&b[0x46..0x48], &2u16.to_le_bytes()); // ParentCount
    for (i, g) in [g0, g1].iter().enumerate() {
        let at = 0x48 + 0x18 * i;
        let mut set = Vec::new();
        set.extend_from_slice(g);
        set.extend_from_slice(&3u16.to_le_bytes());
        set.extend_from_slice(&[0; 6]);
        assert_eq!(&b[at..at + 0x18], &set[..], "parent region set {i}");
    }
    // The fork's filesystem object lives in its own metadata region: combined index 6, after the
    // two parents' three regions each.
    let fs_off = u64::from_le_bytes(b[0x38..0x40].try_into().unwrap());
    assert_eq!(fs_off >> 48, 6);
    let f1 = fs::read(t.path().join("f1.cim")).unwrap();
    assert_eq!(&f1[0x46..0x48], &1u16.to_le_bytes());
    assert_eq!(&f1[0x48..0x58], &g0);
    let cim = Cim::open(&t.path().join("f2.cim")).unwrap();
    let names: Vec<String> = cim
        .read_dir("")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a.txt", "f1.cim.txt", "f2.cim.txt"]);
}

#[test]
fn entry_flags_ea_and_reparse_blobs() {
    let t = tempfile::tempdir().unwrap();
    let ea = vec![0u8, 0, 0, 0, 0, 2, 1, 0, b'A', b'B', 0, 7];
    let reparse = vec![0x0c, 0, 0, 0xa0, 4, 0, 0, 0, 1, 2, 3, 4];
    let mut w = CimWriter::create(t.path(), "blobs.cim").unwrap();
    w.add(
        "r",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_READONLY
                | format::FILE_ATTRIBUTE_HIDDEN
                | format::FILE_ATTRIBUTE_SYSTEM
                | format::FILE_ATTRIBUTE_ARCHIVE
                | format::FILE_ATTRIBUTE_SPARSE_FILE,
            extended_attributes: ea.clone(),
            reparse_data: reparse.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    w.commit().unwrap();
    let cim_path = t.path().join("blobs.cim");
    let (region, entry, _) = locate_entry(&cim_path, 2);
    let m = fs::read(&region).unwrap();
    let e = entry as usize;
    let rd = |o: usize| u64::from_le_bytes(m[o..o + 8].try_into().unwrap());
    assert_eq!(&m[e..e + 2], &0x1fu16.to_le_bytes()); // Flags: RO|Hidden|System|Archive|Sparse
    assert_eq!(&m[e + 2..e + 4], &(ea.len() as u16).to_le_bytes()); // EaLength
    assert_eq!(&m[e + 4..e + 8], &0xa000_000cu32.to_le_bytes()); // ReparseTag
    let ea_at = rd(e + 0x40);
    assert_eq!(ea_at >> 48, 0, "EA in the metadata region");
    assert_eq!(ea_at % 8, 0, "EA 8-byte aligned");
    assert_eq!(&m[ea_at as usize..ea_at as usize + ea.len()], &ea[..]); // raw, no count
    let rp_at = rd(e + 0x48) as usize;
    assert_eq!(rp_at % 8, 0);
    assert_eq!(&m[rp_at..rp_at + 2], &(reparse.len() as u16).to_le_bytes()); // u16 count
    assert_eq!(&m[rp_at + 2..rp_at + 2 + reparse.len()], &reparse[..]);
    let info = Cim::open(&cim_path).unwrap().stat("R").unwrap();
    assert_eq!(
        info.attributes,
        0x1 | 0x2 | 0x4 | 0x20 | 0x200 | format::FILE_ATTRIBUTE_REPARSE_POINT
    );
    assert_eq!(info.extended_attributes, ea);
    assert_eq!(info.reparse_data, reparse);
    assert_eq!(info.reparse_tag, 0xa000_000c);
}

/// Rewrites the file table of the tiny image with entries of `entry_size` bytes (copying what
/// overlaps, filling any extra bytes with 0xEE), appended to the metadata region, and points the
/// file table directory at it.
fn with_entry_size(cim_path: &Path, entry_size: usize) {
    let (region, first, _) = locate_entry(cim_path, 1);
    let mut m = fs::read(&region).unwrap();
    let hdr = fs::read(cim_path).unwrap();
    let fs_off =
        (u64::from_le_bytes(hdr[0x38..0x40].try_into().unwrap()) & 0xffff_ffff_ffff) as usize;
    let ftd = (u64::from_le_bytes(m[fs_off + 8..fs_off + 16].try_into().unwrap())
        & 0xffff_ffff_ffff) as usize;
    let count = u16::from_le_bytes(m[ftd + 8..ftd + 10].try_into().unwrap()) as usize;
    // The table itself 8-byte aligned (as the driver wants link tables), so its count at 4 mod 8.
    while m.len() % 8 != 4 {
        m.push(0);
    }
    let table_at = m.len();
    for i in 0..count {
        let src = first as usize + i * 0x60;
        let keep = entry_size.min(0x60);
        let entry: Vec<u8> = m[src..src + keep].to_vec();
        m.extend_from_slice(&entry);
        m.extend(std::iter::repeat_n(0xEEu8, entry_size - keep));
    }
    m[ftd..ftd + 8].copy_from_slice(&le64(table_at as u64));
    m[ftd + 10..ftd + 12].copy_from_slice(&(entry_size as u16).to_le_bytes());
    fs::write(&region, &m).unwrap();
}

#[test]
fn file_entries_of_v1_and_v3_sizes_read_the_same() {
    // Readers copy min(EntrySize, their struct) bytes and zero the rest (cim-format.md §A5): a v1
    // table (0x58, no ParentFileId/BaseRegionIndex) and a v3 one (0x68, 8 unknown bytes appended)
    // read like the v2 table this crate writes.
    for size in [0x58usize, 0x68] {
        let t = tempfile::tempdir().unwrap();
        let cim_path = tiny(t.path());
        let before = Cim::open(&cim_path).unwrap().stat("a.txt").unwrap();
        with_entry_size(&cim_path, size);
        let cim = Cim::open(&cim_path).unwrap();
        let after = cim.stat("a.txt").unwrap();
        assert_eq!(after, before, "entry size {size:#x}");
        let mut s = String::new();
        cim.open_file("A.TXT")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "abc");
        assert_eq!(cim.read_dir("").unwrap().len(), 1);
    }
}

#[test]
fn data_placement_small_region_and_page_aligned_region() {
    // Under one page: the small-data region, 8-byte aligned. A page or more: the data region,
    // page aligned. Empty: a null offset. Each stored object is listed in its region's objectid file.
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "place.cim").unwrap();
    let files: [(&str, usize, u8); 5] = [
        ("a", 4095, 1),
        ("b", 4096, 2),
        ("c", 5000, 3),
        ("d", 1, 4),
        ("e", 0, 0),
    ];
    for (name, size, fill) in files {
        w.add(
            name,
            &FileMetadata {
                size: size as u64,
                ..Default::default()
            },
        )
        .unwrap();
        w.write(&vec![fill; size]).unwrap();
    }
    w.commit().unwrap();
    let cim_path = t.path().join("place.cim");
    let guid = guid_of(&cim_path);
    let (region, _, _) = locate_entry(&cim_path, 1);
    let m = fs::read(&region).unwrap();
    // (region index, byte offset) each file's data is expected at; ids follow sorted order a..e = 2..6.
    let want = [
        (2u64, 0x28u64),
        (1, 0x1000),
        (1, 0x2000),
        (2, 0x1028),
        // An empty file: no object, but an offset inside the file (the small region's first).
        (2, 0x28),
    ];
    for (i, ((_, size, _), (ri, off))) in files.iter().zip(want).enumerate() {
        let (_, entry, data) = locate_entry(&cim_path, i as u32 + 2);
        let lt = u64::from_le_bytes(
            m[entry as usize + 0x30..entry as usize + 0x38]
                .try_into()
                .unwrap(),
        );
        assert_eq!(lt, *size as u64, "length and type Data of file {i}");
        assert_eq!((data >> 48, data & 0xffff_ffff_ffff), (ri, off), "file {i}");
    }
    let data = fs::read(t.path().join(file_name("region", &guid, 1))).unwrap();
    assert_eq!(data.len(), 0x2000 + 5000);
    assert!(
        data[0x28..0x1000].iter().all(|&b| b == 0),
        "padding to the first page"
    );
    assert!(data[0x1000..0x2000].iter().all(|&b| b == 2));
    assert!(data[0x2000..].iter().all(|&b| b == 3));
    let small = fs::read(t.path().join(file_name("region", &guid, 2))).unwrap();
    assert_eq!(small.len(), 0x1028 + 1);
    assert!(small[0x28..0x28 + 4095].iter().all(|&b| b == 1));
    assert_eq!(small[0x28 + 4095], 0, "alignment padding");
    assert_eq!(small[0x1028], 4);
    // Objectid entries: (length, digest, offset) in write order.
    for (i, objects) in [
        (1u16, vec![(4096u64, 0x1000u64), (5000, 0x2000)]),
        (2, vec![(4095, 0x28), (1, 0x1028)]),
    ] {
        let o = fs::read(t.path().join(file_name("objectid", &guid, i))).unwrap();
        assert_eq!(&o[0x2c..0x30], &(objects.len() as u32).to_le_bytes());
        for (k, (len, off)) in objects.iter().enumerate() {
            let e = 0x30 + 40 * k;
            assert_eq!(&o[e..e + 8], &le64(*len), "objectid {i} entry {k}");
            assert_eq!(
                &o[e + 0x20..e + 0x28],
                &le64(*off),
                "objectid {i} entry {k}"
            );
        }
    }
}
