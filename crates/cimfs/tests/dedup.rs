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
