//! CIM -> layer tar export: the tar carries every backuptar record, and importing it again gives
//! an image with the same tree, data, streams, links and metadata (also for seeded random trees).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use wclayer::export::{export_layer, ExportError, ExportOptions};

const SD: &[u8] = &[
    1, 0, 4, 0x80, 20, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, // header, owner@20, group@32, no DACL
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0, // S-1-5-18
    1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0,
];

fn pax(b: &mut tar::Builder<Vec<u8>>, records: &[(&str, String)]) {
    b.append_pax_extensions(records.iter().map(|(k, v)| (*k, v.as_bytes())))
        .expect("pax");
}

fn meta(attrs: u32, secs: u64, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("mtime", format!("{secs}.5")),
        ("atime", format!("{}", secs + 1)),
        ("ctime", format!("{}", secs + 2)),
        ("LIBARCHIVE.creationtime", format!("{}", secs - 3)),
        ("MSWINDOWS.fileattr", attrs.to_string()),
        ("MSWINDOWS.rawsd", wclayer::backuptar::base64_encode(SD)),
    ];
    for (k, val) in extra {
        v.push((Box::leak(k.to_string().into_boxed_str()), val.clone()));
    }
    v
}

enum E<'a> {
    Dir(&'a str),
    File(&'a str, Vec<u8>, Vec<(&'a str, String)>),
    Stream(&'a str, Vec<u8>),
    Link(&'a str, &'a str),
    Symlink(&'a str, &'a str, bool),
}

fn build(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        match e {
            E::Dir(name) => {
                pax(&mut b, &meta(0x10, 1_600_000_000, &[]));
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).expect("dir");
            }
            E::File(name, data, extra) => {
                pax(&mut b, &meta(0x20, 1_610_000_000, extra));
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).expect("file");
            }
            E::Stream(name, data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).expect("stream");
            }
            E::Link(name, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, name, target).expect("link");
            }
            E::Symlink(name, target, mp) => {
                let extra = if *mp {
                    vec![("MSWINDOWS.mountpoint", "1".to_string())]
                } else {
                    vec![]
                };
                pax(&mut b, &meta(0x420, 1_620_000_000, &extra));
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).expect("symlink");
            }
        }
    }
    b.into_inner().expect("tar")
}

fn base_hives() -> Vec<E<'static>> {
    let mut v = vec![
        E::Dir("Files"),
        E::Dir("Files/Windows"),
        E::Dir("Files/Windows/System32"),
        E::Dir("Files/Windows/System32/config"),
    ];
    for h in ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
        v.push(E::File(
            Box::leak(format!("Files/Windows/System32/config/{h}").into_boxed_str()),
            h.as_bytes().to_vec(),
            vec![],
        ));
    }
    v
}

fn import(tar: &[u8], layer: &Path) -> cimfs::Cim {
    let summary = common::import(tar, layer, &[]).expect("import");
    cimfs::Cim::open(&summary.cim_path).expect("open cim")
}

/// Everything about a tree except file ids: path -> (info without id, data, streams, link group).
/// One entry of a tree snapshot: metadata (file id zeroed), data, streams, hard-link group.
type Snap = (
    cimfs::FileInfo,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    Vec<String>,
);

fn snapshot(cim: &cimfs::Cim) -> BTreeMap<String, Snap> {
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(String::new(), cim.root())];
    while let Some((dir, id)) = stack.pop() {
        for e in cim.read_dir_id(id).expect("read dir") {
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}\\{}", e.name)
            };
            let mut info = cim.file(e.file_id).expect("file");
            let mut data = Vec::new();
            let mut streams = Vec::new();
            if !info.is_directory {
                cim.open_id(e.file_id, None)
                    .expect("open")
                    .read_to_end(&mut data)
                    .expect("read");
                for s in cim.streams_id(e.file_id).expect("streams") {
                    let mut d = Vec::new();
                    cim.open_id(e.file_id, Some(&s.name))
                        .expect("open")
                        .read_to_end(&mut d)
                        .expect("read");
                    streams.push((s.name, d));
                }
                groups.entry(info.file_id).or_default().push(path.clone());
            } else if info.reparse_data.is_empty() {
                stack.push((path.clone(), e.file_id));
            }
            info.file_id = 0;
            out.insert(path, (info, data, streams, Vec::new()));
        }
    }
    for paths in groups.into_values() {
        for p in &paths {
            if let Some(v) = out.get_mut(p) {
                v.3 = paths.clone();
            }
        }
    }
    out
}

fn sample() -> Vec<u8> {
    let long = format!("Files/{}", "x".repeat(140));
    let mut v = base_hives();
    v.extend([
        E::File(
            "Files/a.txt",
            b"alpha".to_vec(),
            vec![("MSWINDOWS.xattr.user.k", "AQID".to_string())],
        ),
        E::Stream("Files/a.txt:zone", b"zone data".to_vec()),
        E::Link("Files/z-link.txt", "Files/a.txt"),
        E::Dir("Files/d\u{e9}j\u{e0}"),
        E::File("Files/d\u{e9}j\u{e0}/vu.txt", vec![7u8; 70_000], vec![]),
        E::Symlink("Files/sym", "a.txt", false),
        E::Symlink("Files/jct", "C:\\ProgramData", true),
    ]);
    v.push(E::File(
        Box::leak(long.into_boxed_str()),
        b"long".to_vec(),
        vec![],
    ));
    build(&v)
}

#[test]
fn exported_tar_carries_backuptar_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cim = import(&sample(), &tmp.path().join("1"));
    let mut tar_bytes = Vec::new();
    let summary = export_layer(&cim, &mut tar_bytes, &ExportOptions::default()).expect("export");
    assert_eq!(
        summary.hard_links, 1,
        "a-link (the Hives\\*_BASE links are skipped with Hives)"
    );
    assert_eq!(summary.symlinks, 2);
    assert_eq!(summary.alternate_streams, 1);
    assert_eq!(summary.skipped, ["Hives", "layout"]);

    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut seen = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut pax = BTreeMap::new();
        if let Some(exts) = entry.pax_extensions().expect("pax") {
            for ext in exts {
                let ext = ext.expect("ext");
                pax.insert(
                    ext.key().expect("key").to_string(),
                    ext.value().expect("value").to_string(),
                );
            }
        }
        let kind = entry.header().entry_type();
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("data");
        seen.insert(name, (kind, pax, link, data));
    }
    assert!(!seen.contains_key("Hives") && !seen.contains_key("layout"));
    let (kind, pax, _, data) = &seen["Files/a.txt"];
    assert_eq!(*kind, tar::EntryType::Regular);
    assert_eq!(data, b"alpha");
    assert_eq!(pax["MSWINDOWS.fileattr"], "32");
    assert_eq!(
        pax["MSWINDOWS.rawsd"],
        wclayer::backuptar::base64_encode(SD)
    );
    assert_eq!(pax["MSWINDOWS.xattr.user.k"], "AQID");
    assert_eq!(pax["mtime"], "1610000000.5");
    assert_eq!(pax["LIBARCHIVE.creationtime"], "1609999997");
    assert_eq!(seen["Files/a.txt:zone"].3, b"zone data");
    let (kind, _, link, _) = &seen["Files/z-link.txt"];
    assert_eq!(
        (*kind, link.as_deref()),
        (tar::EntryType::Link, Some("Files/a.txt"))
    );
    let (kind, pax, link, _) = &seen["Files/jct"];
    assert_eq!(
        (*kind, link.as_deref()),
        (tar::EntryType::Symlink, Some("C:\\ProgramData"))
    );
    assert_eq!(pax["MSWINDOWS.mountpoint"], "1");
    assert_eq!(seen["Files/sym"].2.as_deref(), Some("a.txt"));
    assert!(seen.contains_key(&format!("Files/{}", "x".repeat(140))));
    assert_eq!(seen["Files/d\u{e9}j\u{e0}/vu.txt"].3.len(), 70_000);
    // Parents come before children.
    let names: Vec<&String> = seen.keys().collect();
    assert!(names.iter().any(|n| n.as_str() == "Files/d\u{e9}j\u{e0}"));

    let mut with_generated = Vec::new();
    let s2 = export_layer(
        &cim,
        &mut with_generated,
        &ExportOptions {
            include_generated: true,
        },
    )
    .expect("export");
    assert!(s2.skipped.is_empty());
    assert!(s2.entries > summary.entries);
}

#[test]
fn export_then_import_reproduces_the_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = import(&sample(), &tmp.path().join("a"));
    let mut tar_bytes = Vec::new();
    export_layer(&a, &mut tar_bytes, &ExportOptions::default()).expect("export");
    let b = import(&tar_bytes, &tmp.path().join("b"));
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (k, va) in &sa {
        assert_eq!(va, &sb[k], "{k}");
    }
    // Exporting the re-imported image gives the same bytes.
    let mut again = Vec::new();
    export_layer(&b, &mut again, &ExportOptions::default()).expect("export");
    assert_eq!(again, tar_bytes);
}

#[test]
fn seeded_random_trees_round_trip() {
    for seed in 1..=6u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut names: Vec<String> = Vec::new();
        let mut dirs = vec!["Files".to_string()];
        let mut entries = base_hives();
        for i in 0..40 {
            let parent = dirs[next(dirs.len() as u64) as usize].clone();
            let name = format!(
                "{parent}/n{i}-{}",
                ["a", "\u{3b2}", "Long Name With Spaces", "x.y.z"][next(4) as usize]
            );
            match next(6) {
                0 => {
                    entries.push(E::Dir(Box::leak(name.clone().into_boxed_str())));
                    dirs.push(name);
                }
                1 if !names.is_empty() => {
                    let target = names[next(names.len() as u64) as usize].clone();
                    entries.push(E::Link(
                        Box::leak(name.into_boxed_str()),
                        Box::leak(target.into_boxed_str()),
                    ));
                }
                _ => {
                    let len = next(20_000) as usize;
                    let data: Vec<u8> = (0..len).map(|j| (j as u64 ^ seed) as u8).collect();
                    entries.push(E::File(
                        Box::leak(name.clone().into_boxed_str()),
                        data,
                        vec![],
                    ));
                    if next(5) == 0 {
                        let s = format!("{name}:s{i}");
                        entries.push(E::Stream(Box::leak(s.into_boxed_str()), vec![i as u8; i]));
                    }
                    names.push(name);
                }
            }
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = import(&build(&entries), &tmp.path().join("a"));
        let mut tar_bytes = Vec::new();
        export_layer(&a, &mut tar_bytes, &ExportOptions::default()).expect("export");
        let b = import(&tar_bytes, &tmp.path().join("b"));
        assert_eq!(snapshot(&a), snapshot(&b), "seed {seed}");
    }
}

#[test]
fn reparse_points_without_a_tar_form_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut w = cimfs::CimWriter::create(tmp.path(), "wof.cim").expect("create");
    let dir = cimfs::FileMetadata {
        attributes: 0x10,
        ..Default::default()
    };
    w.add("Files", &dir).expect("dir");
    // IO_REPARSE_TAG_WOF with an empty payload.
    let reparse = vec![0x17, 0, 0, 0x80, 0, 0, 0, 0];
    let meta = cimfs::FileMetadata {
        attributes: 0x420,
        reparse_data: reparse,
        ..Default::default()
    };
    w.add("Files\\compressed.dll", &meta).expect("add");
    w.commit().expect("commit");
    let cim = cimfs::Cim::open(&tmp.path().join("wof.cim")).expect("open");
    let err = export_layer(&cim, std::io::sink(), &ExportOptions::default())
        .expect_err("WOF has no tar form");
    assert!(matches!(err, ExportError::Dialect { .. }), "{err}");
    assert!(err.to_string().contains("Files\\compressed.dll"), "{err}");
}
