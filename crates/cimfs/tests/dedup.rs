//! De-duplication: identical content is stored once, within an image and across a fork.

use std::io::Read;

use cimfs::{Cim, CimWriter, FileMetadata};

fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x9e37_0000;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn same_content_100_times_costs_one_copy() {
    const MIB: usize = 1 << 20;
    let t = tempfile::tempdir().unwrap();
    let data = content(10 * MIB, 1);
    let mut w = CimWriter::create(t.path(), "d.cim").unwrap();
    for i in 0..100 {
        w.add(
            &format!("f{i}"),
            &FileMetadata {
                size: data.len() as u64,
                ..Default::default()
            },
        )
        .unwrap();
        for chunk in data.chunks(MIB) {
            w.write(chunk).unwrap();
        }
    }
    let stats = w.commit().unwrap();
    assert_eq!(stats.dedup_hits, 99);
    assert_eq!(stats.dedup_bytes, 99 * data.len() as u64);
    // One copy plus a page of header/alignment.
    assert!(
        stats.data_region_bytes <= (10 * MIB + 4096) as u64,
        "{}",
        stats.data_region_bytes
    );
    let files = cimfs::image_files(&t.path().join("d.cim")).unwrap();
    let on_disk: u64 = files
        .regions
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk < (10 * MIB + 512 * 1024) as u64, "{on_disk}");
    let cim = Cim::open(&t.path().join("d.cim")).unwrap();
    for i in [0, 57, 99] {
        let mut got = Vec::new();
        cim.open_file(&format!("F{i}"))
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == data, "file {i}");
    }
}

#[test]
fn fork_reuses_parent_objects() {
    let t = tempfile::tempdir().unwrap();
    let big = content(300_000, 2);
    let small = content(100, 3);
    let mut w = CimWriter::create(t.path(), "p.cim").unwrap();
    for (name, d) in [("big", &big), ("small", &small)] {
        w.add(
            name,
            &FileMetadata {
                size: d.len() as u64,
                ..Default::default()
            },
        )
        .unwrap();
        w.write(d).unwrap();
    }
    w.commit().unwrap();
    let mut f = CimWriter::fork(t.path(), "p.cim", "c.cim").unwrap();
    for (name, d) in [("big2", &big), ("small2", &small)] {
        f.add(
            name,
            &FileMetadata {
                size: d.len() as u64,
                ..Default::default()
            },
        )
        .unwrap();
        f.write(d).unwrap();
    }
    let stats = f.commit().unwrap();
    assert_eq!(stats.dedup_hits, 2);
    assert_eq!(stats.data_region_bytes, 0x28);
    assert_eq!(stats.small_region_bytes, 0x28);
    let cim = Cim::open(&t.path().join("c.cim")).unwrap();
    let mut got = Vec::new();
    cim.open_file("big2")
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == big);
    got.clear();
    cim.open_file("small2")
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, small);
}

#[test]
fn verify_digests_catches_changed_data() {
    let t = tempfile::tempdir().unwrap();
    let data = content(50_000, 9);
    let mut w = CimWriter::create(t.path(), "v.cim").unwrap();
    w.add(
        "f",
        &FileMetadata {
            size: data.len() as u64,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(&data).unwrap();
    w.commit().unwrap();
    let cim = t.path().join("v.cim");
    assert!(cimfs::verify::verify_digests(&cim).is_empty());
    let files = cimfs::image_files(&cim).unwrap();
    let mut d = std::fs::read(&files.regions[1]).unwrap();
    d[4096 + 100] ^= 1;
    std::fs::write(&files.regions[1], &d).unwrap();
    // The structure is intact, the content is not.
    assert!(cimfs::verify::verify(&cim).is_empty());
    let p = cimfs::verify::verify_digests(&cim);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].offset, Some(4096));
    assert!(
        p[0].message.ends_with("(the data of f)"),
        "{}",
        p[0].message
    );
    let report = cimfs::verify::verify_digests_report(&cim);
    assert_eq!((report.objects, report.problems), (1, p));
}

#[test]
fn a_fork_reuses_what_a_grandparent_stored() {
    let t = tempfile::tempdir().unwrap();
    let big = content(200_000, 4);
    let file = |size: usize| FileMetadata {
        size: size as u64,
        ..Default::default()
    };
    let mut w = CimWriter::create(t.path(), "g.cim").unwrap();
    w.add("big", &file(big.len())).unwrap();
    w.write(&big).unwrap();
    w.commit().unwrap();
    // The middle image stores other content only.
    let mut m = CimWriter::fork(t.path(), "g.cim", "m.cim").unwrap();
    m.add("other", &file(5000)).unwrap();
    m.write(&content(5000, 5)).unwrap();
    m.commit().unwrap();
    let mut c = CimWriter::fork(t.path(), "m.cim", "c.cim").unwrap();
    c.add("again", &file(big.len())).unwrap();
    c.write(&big).unwrap();
    let stats = c.commit().unwrap();
    assert_eq!(stats.dedup_hits, 1);
    assert_eq!(stats.dedup_bytes, big.len() as u64);
    assert_eq!(stats.data_region_bytes, 0x28, "only the region header");
    let cim = Cim::open(&t.path().join("c.cim")).unwrap();
    let mut got = Vec::new();
    cim.open_file("AGAIN")
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == big);
}

#[test]
fn each_distinct_security_descriptor_is_stored_once() {
    // Self-relative, owner S-1-5-18 at offset 20; a second one differs in the owner's RID.
    let sd = |rid: u8| {
        vec![
            1, 0, 4, 0x80, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 5,
            rid, 0, 0, 0,
        ]
    };
    let (a, b) = (sd(18), sd(19));
    let t = tempfile::tempdir().unwrap();
    let mut w = CimWriter::create(t.path(), "s.cim").unwrap();
    for i in 0..10 {
        let meta = FileMetadata {
            security_descriptor: if i == 7 { b.clone() } else { a.clone() },
            ..Default::default()
        };
        w.add(&format!("f{i}"), &meta).unwrap();
    }
    w.commit().unwrap();
    let mut f = CimWriter::fork(t.path(), "s.cim", "s2.cim").unwrap();
    let meta = FileMetadata {
        security_descriptor: a.clone(),
        ..Default::default()
    };
    f.add("g", &meta).unwrap();
    f.commit().unwrap();
    for (image, files) in [("s.cim", 10), ("s2.cim", 11)] {
        let path = t.path().join(image);
        let meta_region = &cimfs::image_files(&path).unwrap().regions[0];
        let bytes = std::fs::read(meta_region).unwrap();
        let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(&a), 1, "{image}: the shared SD once");
        assert_eq!(count(&b), 1, "{image}: the other SD once");
        let cim = Cim::open(&path).unwrap();
        assert_eq!(cim.stat("f7").unwrap().security_descriptor, b);
        assert_eq!(cim.stat("f3").unwrap().security_descriptor, a);
        assert_eq!(
            cimfs::verify::verify(&path),
            vec![],
            "{image}: {files} files"
        );
    }
}
