//! Layer export of a fork: a child layer (whiteouts of a file and a directory, replaced files,
//! new files, metadata-only changes, ADS, hard links, a real SYSTEM delta) exported against its
//! parent image and imported again on the same parent gives an image with no differences, the
//! same merged SYSTEM_BASE, and a tar that holds only the changes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use common::TarBuilder;
use wclayer::export::{
    check_parent_image, export_layer, export_layer_changes, find_parent_image, ExportError,
    ExportOptions,
};
use wclayer::treediff::{diff_trees, Change, CompareOptions, Difference, Tree};

fn pax_meta(attr: u32, mtime: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MSWINDOWS.fileattr", attr.to_string()),
        ("mtime", mtime.to_string()),
        ("atime", "1650000001.5".into()),
        ("ctime", "1650000002".into()),
        ("LIBARCHIVE.creationtime", "1640000000.1234567".into()),
        ("MSWINDOWS.rawsd", "AQAEgBQAAAAkAAAAAAAAADAAAAABAgAAAAAABSAAAAAgAgAAAQEAAAAAAAUSAAAAAgAcAAEAAAAAABQA/wEfAAEBAAAAAAAFEgAAAA==".into()),
    ]
}

fn dir_meta() -> Vec<(&'static str, String)> {
    pax_meta(0x10, "1640000000")
}

fn link(t: &mut TarBuilder, name: &str, target: &str) {
    t.entry(name, tar::EntryType::Link, &[], target, b"");
}

/// A base layer: real hives under config, and the files the child changes or keeps.
fn base_tar(hives: &Path) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for d in [
        "Files",
        "Files/Windows",
        "Files/Windows/System32",
        "Files/Windows/System32/config",
        "Files/Data",
        "Files/Data/gonedir",
        "Files/Data/gonedir/sub",
        "Files/Data/becomes-file",
        "Files/Data/restyled",
    ] {
        t.dir(d, &dir_meta());
    }
    for h in ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
        t.file(
            &format!("Files/Windows/System32/config/{h}"),
            &pax_meta(0x20, "1640000000"),
            &fs::read(hives.join(h)).unwrap(),
        );
    }
    let m = pax_meta(0x20, "1640000000");
    t.file("Files/Data/keep.txt", &m, b"kept as is");
    t.file("Files/Data/gone.txt", &m, b"removed by the child");
    t.file("Files/Data/gonedir/a.txt", &m, b"a");
    t.file("Files/Data/gonedir/sub/b.txt", &m, b"b");
    t.file("Files/Data/becomes-file/c.txt", &m, b"c");
    t.file("Files/Data/replace.txt", &m, b"old content");
    t.file("Files/Data/meta.txt", &m, b"same bytes, new attributes");
    t.file("Files/Data/ads.txt", &m, b"file with a stream");
    t.file(
        "Files/Data/ads.txt:Zone.Identifier",
        &[],
        b"[ZoneTransfer]\r\nZoneId=3\r\n",
    );
    t.file("Files/Data/linkA", &m, b"linked content");
    link(&mut t, "Files/Data/linkB", "Files/Data/linkA");
    t.file("Files/Data/pair1", &m, b"pair content");
    link(&mut t, "Files/Data/pair2", "Files/Data/pair1");
    t.file("Files/Data/split1", &m, b"split content");
    link(&mut t, "Files/Data/split2", "Files/Data/split1");
    t.entry(
        "Files/Data/sym",
        tar::EntryType::Symlink,
        &pax_meta(0x20, "1640000000"),
        "keep.txt",
        b"",
    );
    // Directories and symlinks can carry alternate streams as well.
    t.file("Files/Data/sym:why", &[], b"a symlink's stream");
    t.dir("Files/Data/streamdir", &dir_meta());
    t.file("Files/Data/streamdir:info", &[], b"a directory's stream");
    t.finish()
}

/// The child layer: every kind of change (and a SYSTEM delta when given one).
fn child_tar(delta: Option<&[u8]>) -> Vec<u8> {
    let mut t = TarBuilder::new();
    let m = pax_meta(0x20, "1650000000.25");
    t.file("Files/Data/.wh.gone.txt", &[], b"");
    t.file("Files/Data/.wh.gonedir", &[], b"");
    t.file("Files/Data/.wh.becomes-file", &[], b"");
    t.file("Files/Data/becomes-file", &m, b"was a directory");
    t.file(
        "Files/Data/replace.txt",
        &m,
        b"new content, longer than before",
    );
    t.file(
        "Files/Data/meta.txt",
        &pax_meta(0x21, "1640000000"),
        b"same bytes, new attributes",
    );
    t.file(
        "Files/Data/ads.txt",
        &pax_meta(0x20, "1640000000"),
        b"file with a stream",
    );
    t.file(
        "Files/Data/ads.txt:Zone.Identifier",
        &[],
        b"[ZoneTransfer]\r\nZoneId=4\r\n",
    );
    t.dir("Files/Data/restyled", &pax_meta(0x12, "1650000000"));
    t.dir("Files/Data/New", &dir_meta());
    t.file("Files/Data/New:tag", &[], b"new directory stream");
    t.file("Files/Data/New/new.txt", &m, b"brand new");
    t.file("Files/Data/New/new.txt:extra", &[], b"new stream");
    link(
        &mut t,
        "Files/Data/New/new-link.txt",
        "Files/Data/New/new.txt",
    );
    // A new name for a file the parent has, unchanged.
    link(&mut t, "Files/Data/linkC", "Files/Data/linkA");
    // pair2 gets its own content: pair1 stays as it was.
    t.file("Files/Data/pair2", &m, b"pair2 alone now");
    // split2 is re-added with the same bytes and metadata but no longer linked to split1.
    t.file(
        "Files/Data/split2",
        &pax_meta(0x20, "1640000000"),
        b"split content",
    );
    if let Some(delta) = delta {
        t.dir("Hives", &[]);
        t.file("Hives/System_Delta", &pax_meta(0x20, "1650000000"), delta);
        link(&mut t, "Files/Data/New/delta-link", "Hives/System_Delta");
    }
    t.finish()
}

struct TarEntry {
    kind: tar::EntryType,
    link: Option<String>,
    data: Vec<u8>,
}

fn tar_entries(tar_bytes: &[u8]) -> BTreeMap<String, TarEntry> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let kind = e.header().entry_type();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, TarEntry { kind, link, data });
    }
    out
}

fn differences(a: &Path, b: &Path) -> Vec<Difference> {
    let (a, b) = (cimfs::Cim::open(a).unwrap(), cimfs::Cim::open(b).unwrap());
    let (ta, tb) = (Tree::read(&a).unwrap(), Tree::read(&b).unwrap());
    diff_trees(&a, &ta, &b, &tb, &CompareOptions::default()).unwrap()
}

fn read_host(layer: &Path, rel: &str) -> Vec<u8> {
    fs::read(wclayer::layout::host_path(layer, rel)).unwrap()
}

#[test]
fn child_layer_export_round_trips() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(hives) = common::hive_dir(&shared, &tmp.path().join("hives")) else {
        return;
    };
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let snaps = tmp.path().join("snapshots");
    let (l1, l2, l3) = (snaps.join("1"), snaps.join("2"), snaps.join("3"));
    let s1 = common::import(&base_tar(&hives), &l1, &[]).unwrap();
    let s2 = common::import(&child_tar(Some(&delta)), &l2, &[&l1]).unwrap();
    let (base, child) = (
        cimfs::Cim::open(&s1.cim_path).unwrap(),
        cimfs::Cim::open(&s2.cim_path).unwrap(),
    );

    // What the child inherits unchanged is read from the parent's regions, so comparing it
    // needs no reading; a replaced file is stored anew.
    for (path, shared_storage) in [
        (r"Files\Data\keep.txt", true),
        (r"Files\Windows\System32\config\SYSTEM", true),
        (r"Files\Data\replace.txt", false),
    ] {
        let (a, b) = (
            base.open_file(path).unwrap(),
            child.open_file(path).unwrap(),
        );
        assert_eq!(a.same_stored_bytes(&b), shared_storage, "{path}");
    }

    // The nearest parent is found by region sets; the grandparent-less base is no fork.
    assert_eq!(find_parent_image(&child).unwrap(), s1.cim_path);
    check_parent_image(&child, &base).unwrap();
    assert!(matches!(
        find_parent_image(&base),
        Err(ExportError::Parent { .. })
    ));

    let mut tar_bytes = Vec::new();
    let summary =
        export_layer_changes(&child, &base, &mut tar_bytes, &ExportOptions::default()).unwrap();
    let entries = tar_entries(&tar_bytes);
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    // Exactly the changes: one whiteout per removed file or directory (not its children), the
    // directory that became a file, the rewritten files, and links.
    // (`new-link.txt` sorts before `new.txt` in the image, so it is the full entry.)
    let want = [
        "Files/Data/.wh.gone.txt",
        "Files/Data/.wh.gonedir",
        "Files/Data/New",
        "Files/Data/New/delta-link",
        "Files/Data/New/new-link.txt",
        "Files/Data/New/new-link.txt:extra",
        "Files/Data/New/new.txt",
        "Files/Data/New:tag",
        "Files/Data/ads.txt",
        "Files/Data/ads.txt:Zone.Identifier",
        "Files/Data/becomes-file",
        "Files/Data/linkC",
        "Files/Data/meta.txt",
        "Files/Data/pair2",
        "Files/Data/replace.txt",
        "Files/Data/restyled",
        "Files/Data/split1",
        "Files/Data/split2",
        "Hives",
        "Hives/System_Delta",
    ];
    assert_eq!(names, want, "{names:#?}");
    assert_eq!(summary.whiteouts, 2);
    assert_eq!(summary.skipped, [r"Hives\SYSTEM_BASE"]);
    assert_eq!(entries["Files/Data/linkC"].kind, tar::EntryType::Link);
    assert_eq!(
        entries["Files/Data/linkC"].link.as_deref(),
        Some("Files/Data/linkA")
    );
    // The hive is the full entry of its link group; the other name links to it.
    assert_eq!(entries["Hives/System_Delta"].data, delta);
    assert_eq!(
        entries["Files/Data/New/delta-link"].link.as_deref(),
        Some("Hives/System_Delta")
    );
    assert_eq!(
        entries["Files/Data/becomes-file"].kind,
        tar::EntryType::Regular
    );
    // Hard links come after every full entry.
    let order: Vec<tar::EntryType> = {
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect()
    };
    let first_link = order
        .iter()
        .position(|k| *k == tar::EntryType::Link)
        .unwrap();
    assert!(order[first_link..]
        .iter()
        .all(|k| *k == tar::EntryType::Link));

    // Import the exported child on the same parent: nothing differs, SYSTEM_BASE is the same.
    let s3 = common::import(&tar_bytes, &l3, &[&l1]).unwrap();
    let d = differences(&s2.cim_path, &s3.cim_path);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(
        read_host(&l2, r"Hives\SYSTEM_BASE"),
        read_host(&l3, r"Hives\SYSTEM_BASE")
    );
    // ... and exporting the re-imported child gives the same tar.
    let again_cim = cimfs::Cim::open(&s3.cim_path).unwrap();
    let mut again = Vec::new();
    export_layer_changes(&again_cim, &base, &mut again, &ExportOptions::default()).unwrap();
    assert!(again == tar_bytes, "the export is deterministic");

    // With include_generated the merged hive is written too.
    let mut with_generated = Vec::new();
    let s = export_layer_changes(
        &child,
        &base,
        &mut with_generated,
        &ExportOptions {
            include_generated: true,
        },
    )
    .unwrap();
    assert!(s.skipped.is_empty());
    assert!(tar_entries(&with_generated).contains_key("Hives/SYSTEM_BASE"));

    // A grandchild's nearest parent is the child, not the base. It brings the child's SYSTEM
    // delta again, as a new file (so no longer linked to delta-link): both are written again.
    let mut t = TarBuilder::new();
    t.file("Files/Data/.wh.keep.txt", &[], b"");
    t.file(
        "Files/Data/late.txt",
        &pax_meta(0x20, "1660000000"),
        b"late",
    );
    t.file("Hives/System_Delta", &pax_meta(0x20, "1650000000"), &delta);
    let l4 = snaps.join("4");
    let s4 = common::import(&t.finish(), &l4, &[&l2, &l1]).unwrap();
    let grandchild = cimfs::Cim::open(&s4.cim_path).unwrap();
    assert_eq!(find_parent_image(&grandchild).unwrap(), s2.cim_path);
    let err = check_parent_image(&grandchild, &base).unwrap_err();
    assert!(err.to_string().contains("not its nearest parent"), "{err}");
    let mut gtar = Vec::new();
    export_layer_changes(&grandchild, &child, &mut gtar, &ExportOptions::default()).unwrap();
    let gentries = tar_entries(&gtar);
    assert_eq!(
        gentries.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "Files/Data/.wh.keep.txt",
            "Files/Data/New/delta-link",
            "Files/Data/late.txt",
            "Hives/System_Delta"
        ]
    );
    assert_eq!(
        gentries["Files/Data/New/delta-link"].kind,
        tar::EntryType::Regular
    );
    let l5 = snaps.join("5");
    let s5 = common::import(&gtar, &l5, &[&l2, &l1]).unwrap();
    let d = differences(&s4.cim_path, &s5.cim_path);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(
        read_host(&l4, r"Hives\SYSTEM_BASE"),
        read_host(&l5, r"Hives\SYSTEM_BASE")
    );

    // Without the parent's .cim (its regions still there) the parent cannot be found.
    let moved = snaps.join("cim-layers/2.cim.away");
    fs::rename(&s2.cim_path, &moved).unwrap();
    let err = find_parent_image(&grandchild).unwrap_err();
    assert!(
        matches!(err, ExportError::Parent { .. }) && err.to_string().contains("no image in"),
        "{err}"
    );
    fs::rename(&moved, &s2.cim_path).unwrap();
}

#[test]
fn flattened_fork_and_base_layer_exports_still_import() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(hives) = common::hive_dir(&shared, &tmp.path().join("hives")) else {
        return;
    };
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let snaps = tmp.path().join("snapshots");
    let (l1, l2) = (snaps.join("1"), snaps.join("2"));
    let s1 = common::import(&base_tar(&hives), &l1, &[]).unwrap();
    let s2 = common::import(&child_tar(Some(&delta)), &l2, &[&l1]).unwrap();

    // Base layer: the whole tree, imported as a base again, is the same image.
    let base = cimfs::Cim::open(&s1.cim_path).unwrap();
    let mut base_tar_bytes = Vec::new();
    export_layer(&base, &mut base_tar_bytes, &ExportOptions::default()).unwrap();
    let r1 = tmp.path().join("again/1");
    let again = common::import(&base_tar_bytes, &r1, &[]).unwrap();
    let d = differences(&s1.cim_path, &again.cim_path);
    assert!(d.is_empty(), "{d:#?}");

    // A fork flattened: a base-layer tar that imports; only Hives\ differs (rebuilt from the
    // config hives by base-layer import), with the hard links into it.
    let child = cimfs::Cim::open(&s2.cim_path).unwrap();
    let mut flat = Vec::new();
    let summary = export_layer(&child, &mut flat, &ExportOptions::default()).unwrap();
    assert_eq!(summary.whiteouts, 0);
    let f1 = tmp.path().join("flat/1");
    let flat_import = common::import(&flat, &f1, &[]).unwrap();
    let d = differences(&s2.cim_path, &flat_import.cim_path);
    assert!(!d.is_empty());
    for x in &d {
        let path = match x {
            Difference::Added(p) | Difference::Removed(p) | Difference::Changed(p, _) => p,
        };
        let hive_link = matches!(x, Difference::Changed(p, w)
            if p.starts_with(r"Files\Windows\System32\config\") && w == &[Change::Links]);
        assert!(
            path == "Hives"
                || path.starts_with("Hives\\")
                || path == r"Files\Data\New\delta-link"
                || hive_link,
            "{x:?}"
        );
    }
}

/// Five files that stand in for hives (a base layer does not parse them).
fn stand_in_hives(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for h in ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
        fs::write(dir.join(h), format!("stand-in {h} hive")).unwrap();
    }
}

#[test]
fn child_layer_without_hive_deltas_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let hives = tmp.path().join("hives");
    stand_in_hives(&hives);
    let snaps = tmp.path().join("snapshots");
    let (l1, l2, l3) = (snaps.join("1"), snaps.join("2"), snaps.join("3"));
    let mut base = base_tar(&hives);
    // A directory with a child that the child layer turns into a symlink.
    let mut t = TarBuilder::new();
    t.dir("Files/Data/dirlink", &dir_meta());
    t.file(
        "Files/Data/dirlink/inner.txt",
        &pax_meta(0x20, "1640000000"),
        b"inner",
    );
    base.truncate(base.len() - 1024);
    base.extend_from_slice(&t.finish());
    let mut child = child_tar(None);
    let mut t = TarBuilder::new();
    t.entry(
        "Files/Data/dirlink",
        tar::EntryType::Symlink,
        &pax_meta(0x410, "1650000000"),
        "New",
        b"",
    );
    child.truncate(child.len() - 1024);
    child.extend_from_slice(&t.finish());
    let s1 = common::import(&base, &l1, &[]).unwrap();
    let s2 = common::import(&child, &l2, &[&l1]).unwrap();
    let (base_cim, child_cim) = (
        cimfs::Cim::open(&s1.cim_path).unwrap(),
        cimfs::Cim::open(&s2.cim_path).unwrap(),
    );
    // A directory symlink (attributes 0x410) replaces the directory, entries and all.
    let dirlink = child_cim.stat(r"Files\Data\dirlink").unwrap();
    assert!(dirlink.is_directory && !dirlink.reparse_data.is_empty());
    assert!(child_cim.stat(r"Files\Data\dirlink\inner.txt").is_err());
    let mut tar_bytes = Vec::new();
    let summary = export_layer_changes(
        &child_cim,
        &base_cim,
        &mut tar_bytes,
        &ExportOptions::default(),
    )
    .unwrap();
    assert!(summary.skipped.is_empty());
    let entries = tar_entries(&tar_bytes);
    // The directory that became a directory symlink is whited out first (an importer that
    // updates a directory in place would keep its entries), its child is not.
    assert!(entries.contains_key("Files/Data/.wh.dirlink"));
    assert!(!entries.keys().any(|k| k.contains(".wh.inner")));
    assert_eq!(entries["Files/Data/dirlink"].kind, tar::EntryType::Symlink);
    assert!(!entries
        .keys()
        .any(|k| k.contains("inner") || k.starts_with("Hives")));
    for unchanged in ["keep.txt", "linkA", "linkB", "pair1", "sym"] {
        assert!(
            !entries.contains_key(&format!("Files/Data/{unchanged}")),
            "{unchanged}"
        );
    }
    let s3 = common::import(&tar_bytes, &l3, &[&l1]).unwrap();
    let d = differences(&s2.cim_path, &s3.cim_path);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn directory_turned_directory_reparse_point_is_whited_out_first() {
    // Import never makes directory reparse points, so build the images with the CIM writer.
    let tmp = tempfile::tempdir().unwrap();
    let dir = cimfs::FileMetadata {
        attributes: 0x10,
        ..Default::default()
    };
    let mut w = cimfs::CimWriter::create(tmp.path(), "p.cim").unwrap();
    w.add("d", &dir).unwrap();
    w.add(r"d\c", &cimfs::FileMetadata::default()).unwrap();
    w.add("e", &dir).unwrap();
    w.add(r"e\gone", &cimfs::FileMetadata::default()).unwrap();
    w.commit().unwrap();
    let mut w = cimfs::CimWriter::fork(tmp.path(), "p.cim", "f.cim").unwrap();
    w.remove("d").unwrap();
    let reparse = wclayer::backuptar::encode_reparse_point(&wclayer::backuptar::ReparsePoint {
        target: "e".into(),
        is_mount_point: false,
    })
    .unwrap();
    w.add(
        "d",
        &cimfs::FileMetadata {
            attributes: 0x410,
            reparse_data: reparse,
            ..Default::default()
        },
    )
    .unwrap();
    // Something under the directory reparse point: the tar carries the link only.
    w.add(r"d\under", &cimfs::FileMetadata::default()).unwrap();
    w.remove(r"e\gone").unwrap();
    w.commit().unwrap();
    let p = cimfs::Cim::open(&tmp.path().join("p.cim")).unwrap();
    let f = cimfs::Cim::open(&tmp.path().join("f.cim")).unwrap();
    assert_eq!(find_parent_image(&f).unwrap(), tmp.path().join("p.cim"));
    let mut out = Vec::new();
    let summary = export_layer_changes(&f, &p, &mut out, &ExportOptions::default()).unwrap();
    let names: Vec<String> = tar_entries(&out).into_keys().collect();
    // Updating the directory in place would keep d\c: it is whited out, then written again.
    assert_eq!(names, [".wh.d", "d", "e/.wh.gone"]);
    assert_eq!(summary.whiteouts, 2);
    assert_eq!(summary.symlinks, 1);
}

/// A small xorshift generator: the seeded tests stay reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// What exists after the layers so far (tar names), and the bytes of each file.
struct Live {
    files: Vec<String>,
    dirs: Vec<String>,
    contents: BTreeMap<String, Vec<u8>>,
}

/// A random child layer on top of `live` (updated to what exists after it); new names carry
/// `tag` so that layers do not collide.
fn random_child(rng: &mut Rng, live: &mut Live, tag: &str) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for i in 0..25 {
        match rng.below(8) {
            0 if live.dirs.len() > 1 => {
                let d = live.dirs.remove(1 + rng.below(live.dirs.len() - 1));
                let (p, b) = d.rsplit_once('/').unwrap();
                t.file(&format!("{p}/.wh.{b}"), &[], b"");
                let under = format!("{d}/");
                live.dirs.retain(|x| !x.starts_with(&under));
                live.files.retain(|x| !x.starts_with(&under));
            }
            1 if !live.files.is_empty() => {
                let f = live.files.remove(rng.below(live.files.len()));
                let (p, b) = f.rsplit_once('/').unwrap();
                t.file(&format!("{p}/.wh.{b}"), &[], b"");
            }
            2 if !live.files.is_empty() => {
                let f = live.files[rng.below(live.files.len())].clone();
                let data = format!("{tag} new {i}").into_bytes();
                t.file(&f, &pax_meta(0x20, "1650000000"), &data);
                live.contents.insert(f, data);
            }
            3 if !live.files.is_empty() => {
                // The bytes it has now, with new attributes or the same ones (the latter only
                // breaks a hard link, or drops a stream).
                let f = live.files[rng.below(live.files.len())].clone();
                let attrs = if rng.below(2) == 0 { 0x20 } else { 0x21 };
                let data = live.contents.get(&f).cloned().unwrap_or_default();
                t.file(&f, &pax_meta(attrs, "1640000000"), &data);
            }
            4 if !live.files.is_empty() => {
                let target = live.files[rng.below(live.files.len())].clone();
                let dir = &live.dirs[rng.below(live.dirs.len())];
                let name = format!("{dir}/{tag}l{i}");
                link(&mut t, &name, &target);
                let data = live.contents.get(&target).cloned().unwrap_or_default();
                live.contents.insert(name.clone(), data);
                live.files.push(name);
            }
            5 if !live.files.is_empty() => {
                let f = live.files[rng.below(live.files.len())].clone();
                let data = b"with a new stream".to_vec();
                t.file(&f, &pax_meta(0x20, "1640000000"), &data);
                t.file(
                    &format!("{f}:s"),
                    &[],
                    format!("{tag} stream {i}").as_bytes(),
                );
                live.contents.insert(f, data);
            }
            6 => {
                let dir = live.dirs[rng.below(live.dirs.len())].clone();
                let name = format!("{dir}/{tag}d{i}");
                t.dir(&name, &pax_meta(0x10, "1650000000"));
                live.dirs.push(name);
            }
            _ => {
                let dir = &live.dirs[rng.below(live.dirs.len())];
                let name = format!("{dir}/{tag}f{i}");
                let data = vec![i as u8; 100 * i];
                t.file(&name, &pax_meta(0x20, "1650000000"), &data);
                live.contents.insert(name.clone(), data);
                live.files.push(name);
            }
        }
    }
    t.finish()
}

/// Seeded random children (and grandchildren) of a random base: removals (files and directories), replacements,
/// metadata-only changes, new names for inherited files, links broken by re-adding a file as
/// it was, stream changes, new files and directories. Each child exported against the base and
/// imported again on it has no differences.
#[test]
fn seeded_random_children_round_trip() {
    let (mut links, mut whiteouts, mut written) = (0, 0, 0);
    for seed in 1..=16u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let tmp = tempfile::tempdir().unwrap();
        let hives = tmp.path().join("hives");
        stand_in_hives(&hives);
        let mut dirs = vec!["Files/R".to_string()];
        let mut files: Vec<String> = Vec::new();
        let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut t = TarBuilder::new();
        for d in [
            "Files",
            "Files/Windows",
            "Files/Windows/System32",
            "Files/Windows/System32/config",
        ] {
            t.dir(d, &dir_meta());
        }
        for h in ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
            t.file(
                &format!("Files/Windows/System32/config/{h}"),
                &pax_meta(0x20, "1640000000"),
                &fs::read(hives.join(h)).unwrap(),
            );
        }
        t.dir("Files/R", &dir_meta());
        for i in 0..60 {
            let parent = dirs[rng.below(dirs.len())].clone();
            let name = format!("{parent}/n{i}");
            match rng.below(5) {
                0 => {
                    t.dir(&name, &dir_meta());
                    dirs.push(name);
                }
                1 if !files.is_empty() => {
                    let target = files[rng.below(files.len())].clone();
                    link(&mut t, &name, &target);
                    let data = contents.get(&target).cloned().unwrap_or_default();
                    contents.insert(name.clone(), data);
                    files.push(name);
                }
                _ => {
                    let data = vec![(i % 7) as u8; rng.below(3000)];
                    t.file(&name, &pax_meta(0x20, "1640000000"), &data);
                    contents.insert(name.clone(), data);
                    if rng.below(4) == 0 {
                        t.file(&format!("{name}:s"), &[], b"stream");
                    }
                    files.push(name);
                }
            }
        }
        let base = t.finish();

        let mut live = Live {
            files: files.clone(),
            dirs: dirs.clone(),
            contents,
        };
        let child = random_child(&mut rng, &mut live, "c");

        let snaps = tmp.path().join("snapshots");
        let (l1, l2, l3) = (snaps.join("1"), snaps.join("2"), snaps.join("3"));
        let s1 = common::import(&base, &l1, &[]).unwrap();
        let s2 = common::import(&child, &l2, &[&l1]).unwrap();
        let (p, f) = (
            cimfs::Cim::open(&s1.cim_path).unwrap(),
            cimfs::Cim::open(&s2.cim_path).unwrap(),
        );
        let mut out = Vec::new();
        let summary = export_layer_changes(&f, &p, &mut out, &ExportOptions::default()).unwrap();
        links += summary.hard_links;
        whiteouts += summary.whiteouts;
        written += summary.files;
        let s3 = common::import(&out, &l3, &[&l1]).unwrap();
        let d = differences(&s2.cim_path, &s3.cim_path);
        assert!(d.is_empty(), "seed {seed}: {d:#?}");

        // A grandchild, exported against the child.
        let grandchild = random_child(&mut rng, &mut live, "g");
        let (l4, l5) = (snaps.join("4"), snaps.join("5"));
        let s4 = common::import(&grandchild, &l4, &[&l2, &l1]).unwrap();
        let g = cimfs::Cim::open(&s4.cim_path).unwrap();
        assert_eq!(find_parent_image(&g).unwrap(), s2.cim_path);
        let mut out = Vec::new();
        let summary = export_layer_changes(&g, &f, &mut out, &ExportOptions::default()).unwrap();
        links += summary.hard_links;
        whiteouts += summary.whiteouts;
        written += summary.files;
        let s5 = common::import(&out, &l5, &[&l2, &l1]).unwrap();
        let d = differences(&s4.cim_path, &s5.cim_path);
        assert!(d.is_empty(), "seed {seed}, grandchild: {d:#?}");
    }
    eprintln!("{written} files, {links} hard links, {whiteouts} whiteouts exported");
    assert!(links > 10 && whiteouts > 10 && written > 50);
}
