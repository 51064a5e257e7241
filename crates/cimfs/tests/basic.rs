//! End-to-end checks of the writer and reader on small hand-made trees.

use std::io::Read;

use cimfs::{format, Cim, CimWriter, Error, FileMetadata};

fn dir_meta() -> FileMetadata {
    FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    }
}

fn file_meta(size: u64) -> FileMetadata {
    FileMetadata {
        attributes: format::FILE_ATTRIBUTE_ARCHIVE,
        size,
        creation_time: 1,
        last_write_time: 2,
        change_time: 3,
        last_access_time: 4,
        ..Default::default()
    }
}

fn add_file(w: &mut CimWriter, path: &str, data: &[u8]) {
    w.add(path, &file_meta(data.len() as u64)).unwrap();
    w.write(data).unwrap();
}

#[test]
fn write_and_read_back() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    w.add("Files", &dir_meta()).unwrap();
    w.add("Files\\Windows", &dir_meta()).unwrap();
    add_file(&mut w, "Files\\Windows\\notepad.exe", b"MZ hello");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    add_file(&mut w, "Files\\big.bin", &big);
    w.add("Files\\empty", &file_meta(0)).unwrap();
    w.add("Files\\sparse", &file_meta(10)).unwrap();
    w.add_alternate_stream("Files\\big.bin:zone:$DATA", 3)
        .unwrap();
    w.write(b"abc").unwrap();
    w.add_link("Files\\link.exe", "Files\\Windows\\notepad.exe")
        .unwrap();
    let stats = w.commit().unwrap();
    assert_eq!(stats.files, 7);

    let cim = Cim::open(&t.path().join("a.cim")).unwrap();
    let names: Vec<String> = cim
        .read_dir("files")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["big.bin", "empty", "link.exe", "sparse", "Windows"]);
    let mut s = String::new();
    cim.open_file("FILES\\WINDOWS\\NOTEPAD.EXE")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "MZ hello");
    let mut b = Vec::new();
    cim.open_file("/Files/big.bin")
        .unwrap()
        .read_to_end(&mut b)
        .unwrap();
    assert_eq!(b, big);
    let info = cim.stat("Files\\Windows\\notepad.exe").unwrap();
    assert_eq!(info.file_id, cim.lookup("Files\\link.exe").unwrap());
    assert_eq!(
        (
            info.creation_time,
            info.last_write_time,
            info.change_time,
            info.last_access_time
        ),
        (1, 2, 3, 4)
    );
    assert_eq!(info.attributes, format::FILE_ATTRIBUTE_ARCHIVE);
    assert_eq!(info.security_descriptor, format::NULL_DACL_SD);
    let sp = cim.stat("Files\\sparse").unwrap();
    assert!(sp.sparse);
    let mut z = Vec::new();
    cim.open_file("Files\\sparse")
        .unwrap()
        .read_to_end(&mut z)
        .unwrap();
    assert_eq!(z, [0u8; 10]);
    let streams = cim
        .streams_id(cim.lookup("Files\\big.bin").unwrap())
        .unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].name, "zone");
    let mut a = String::new();
    cim.open_stream("Files\\big.bin", "ZONE")
        .unwrap()
        .read_to_string(&mut a)
        .unwrap();
    assert_eq!(a, "abc");
    assert!(matches!(
        cim.lookup("Files\\nope"),
        Err(Error::NotFound { .. })
    ));
    assert!(cimfs::verify::verify(&t.path().join("a.cim")).is_empty());
}

#[test]
fn parent_must_exist() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    let e = w.add("Files\\x.txt", &file_meta(0)).unwrap_err();
    assert!(e.to_string().contains("parent directory"), "{e}");
}

#[test]
fn drop_without_commit_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    add_file(&mut w, "x", &[1; 10000]);
    drop(w);
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn fork_shows_merged_tree_and_keeps_parent() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "base.cim").unwrap();
    w.add("Files", &dir_meta()).unwrap();
    add_file(&mut w, "Files\\keep.txt", b"keep");
    add_file(&mut w, "Files\\gone.txt", b"gone");
    add_file(&mut w, "Files\\change.txt", b"old");
    w.commit().unwrap();
    let mut f = CimWriter::fork(t.path(), "base.cim", "child.cim").unwrap();
    f.remove("Files\\gone.txt").unwrap();
    add_file(&mut f, "Files\\CHANGE.txt", b"new!");
    add_file(&mut f, "Files\\new.txt", b"keep");
    let stats = f.commit().unwrap();
    assert_eq!(stats.dedup_hits, 1);
    let child = Cim::open(&t.path().join("child.cim")).unwrap();
    let names: Vec<String> = child
        .read_dir("Files")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["CHANGE.txt", "keep.txt", "new.txt"]);
    let mut s = String::new();
    child
        .open_file("files\\change.txt")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "new!");
    let base = Cim::open(&t.path().join("base.cim")).unwrap();
    assert!(base.lookup("Files\\gone.txt").is_ok());
    assert_eq!(child.parents().len(), 1);
    let files = cimfs::image_files(&t.path().join("child.cim")).unwrap();
    assert_eq!(files.regions.len(), 3);
    assert_eq!(files.parent_regions.len(), 3);
    assert!(cimfs::verify::verify(&t.path().join("child.cim")).is_empty());
}

#[test]
fn region_files_found_case_insensitively() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    add_file(&mut w, "x.txt", b"x");
    w.commit().unwrap();
    for e in std::fs::read_dir(t.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("region_") {
            std::fs::rename(&p, t.path().join(name.to_uppercase())).unwrap();
        }
    }
    let cim = Cim::open(&t.path().join("a.cim")).unwrap();
    assert_eq!(cim.stat("X.TXT").unwrap().size, 1);
    assert!(cimfs::verify::verify(&t.path().join("a.cim")).is_empty());
}

#[test]
fn deep_paths_and_io_write() {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    let mut p = String::new();
    for i in 0..200 {
        p.push_str(&format!("\\level{i}"));
        w.add(&p, &dir_meta()).unwrap();
    }
    assert_eq!(w.kind(&p), Some(cimfs::FileKind::Directory));
    let f = format!("{p}\\leaf.txt");
    w.add(&f, &file_meta(5)).unwrap();
    std::io::copy(&mut &b"hello"[..], &mut w).unwrap();
    assert!(
        w.write_all(b"!").is_err(),
        "a write past the declared size must fail"
    );
    assert_eq!(w.kind(&f.to_uppercase()), Some(cimfs::FileKind::File));
    assert_eq!(w.kind("nope"), None);
    w.commit().unwrap();
    let cim = Cim::open(&t.path().join("a.cim")).unwrap();
    let mut s = String::new();
    cim.open_file(&f).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
}

#[test]
fn failed_commit_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    add_file(&mut w, "x.bin", &[5u8; 20000]);
    // Someone else publishes a.cim first: our commit must fail and remove its own files.
    std::fs::write(t.path().join("a.cim"), b"other").unwrap();
    assert!(matches!(w.commit(), Err(Error::AlreadyExists { .. })));
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["a.cim"]);
    assert_eq!(std::fs::read(t.path().join("a.cim")).unwrap(), b"other");
}

#[test]
fn replace_semantics() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    w.add("D", &dir_meta()).unwrap();
    add_file(&mut w, "D\\f", b"1");
    // Re-adding a directory keeps its entries and takes the new name's case.
    w.add(
        "d",
        &FileMetadata {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY | format::FILE_ATTRIBUTE_HIDDEN,
            ..Default::default()
        },
    )
    .unwrap();
    // A file replacing a directory drops the directory's subtree.
    w.add("E", &dir_meta()).unwrap();
    add_file(&mut w, "E\\g", b"2");
    add_file(&mut w, "e", b"3");
    // Links to directories are refused, removing a missing path is NotFound.
    assert!(w.add_link("L", "D").is_err());
    assert!(matches!(w.remove("nope"), Err(Error::NotFound { .. })));
    assert!(matches!(
        w.remove("D\\f:nostream"),
        Err(Error::NotFound { .. })
    ));
    w.commit().unwrap();
    let cim = Cim::open(&t.path().join("a.cim")).unwrap();
    let root: Vec<String> = cim
        .read_dir("")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(root, ["d", "e"]);
    assert_eq!(cim.read_dir("d").unwrap().len(), 1);
    assert_eq!(
        cim.stat("d").unwrap().attributes,
        format::FILE_ATTRIBUTE_DIRECTORY | format::FILE_ATTRIBUTE_HIDDEN
    );
    assert!(!cim.stat("e").unwrap().is_directory);
}

#[test]
fn verify_reports_unsorted_directory() {
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "a.cim").unwrap();
    add_file(&mut w, "aa", b"1");
    add_file(&mut w, "bb", b"2");
    w.commit().unwrap();
    let files = cimfs::image_files(&t.path().join("a.cim")).unwrap();
    let mut m = std::fs::read(&files.regions[0]).unwrap();
    // Swap the two names in the root link table (both 2 units long): "bb" now sorts before "aa".
    let a: Vec<u8> = "aa".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let b: Vec<u8> = "bb".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let pa = m.windows(4).position(|x| x == &a[..]).unwrap();
    let pb = m.windows(4).position(|x| x == &b[..]).unwrap();
    m[pa..pa + 4].copy_from_slice(&b);
    m[pb..pb + 4].copy_from_slice(&a);
    std::fs::write(&files.regions[0], &m).unwrap();
    let problems = cimfs::verify::verify(&t.path().join("a.cim"));
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("not in case-insensitive order")),
        "{problems:?}"
    );
    assert!(
        problems[0].to_string().contains("region_"),
        "{}",
        problems[0]
    );
}
