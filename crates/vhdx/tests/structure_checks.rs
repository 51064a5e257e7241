//! MS-VHDX rules that opening checks: the region table's entry count, regions that overlap one
//! another, the log or the header section, the physical sector size, and BAT entries whose
//! block lies past the end of the file or over the file's own structures (refused when read,
//! counted by `info`), and a parent that describes another disk than its child.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use vhdx::format::*;
use vhdx::{create_differencing, create_dynamic, Error, ParentLocator, VhdxFile};

/// An 8 MiB dynamic disk (log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB) with blocks 0..4
/// written, so the file holds them at 4, 5, 6 and 7 MiB and is 8 MiB long.
fn disk(dir: &Path) -> PathBuf {
    let p = dir.join("d.vhdx");
    create_dynamic(&p, 8 * MIB, MIB as u32, 512).unwrap();
    let mut v = VhdxFile::open_rw(&p).unwrap();
    for b in 0..4u8 {
        v.write_at(u64::from(b) * MIB, &vec![b + 1; MIB as usize])
            .unwrap();
    }
    v.flush().unwrap();
    drop(v);
    assert_eq!(fs::metadata(&p).unwrap().len(), 8 * MIB);
    p
}

/// The reason of a `Corrupt` error (panics on any other outcome).
fn corrupt_reason(r: vhdx::Result<VhdxFile>) -> String {
    match r {
        Err(Error::Corrupt { reason, .. }) => reason,
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

fn present(mb: u64) -> BatEntry {
    BatEntry {
        state: PAYLOAD_FULLY_PRESENT,
        file_offset_mb: mb,
    }
}

#[test]
fn a_region_table_claiming_more_than_2047_entries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    // Only the first copy, with a valid checksum: it is intact, so it is not passed over for
    // the second one but refused.
    let mut t = read_at(&p, REGION_TABLE1_OFFSET, REGION_TABLE_SIZE);
    put_u32(&mut t, 8, 100_000);
    let crc = checksum_with_zeroed_field(&t, 4);
    put_u32(&mut t, 4, crc);
    write_at(&p, REGION_TABLE1_OFFSET, &t);
    let reason = corrupt_reason(VhdxFile::open(&p));
    assert!(reason.contains("100000 entries (max 2047)"), "{reason}");
    assert!(vhdx::info(&p).is_err());
    // 2047 itself is allowed by the count check (the entries then fail on their own terms).
    put_u32(&mut t, 8, 2047);
    let crc = checksum_with_zeroed_field(&t, 4);
    put_u32(&mut t, 4, crc);
    write_at(&p, REGION_TABLE1_OFFSET, &t);
    let reason = corrupt_reason(VhdxFile::open(&p));
    assert!(!reason.contains("max 2047"), "{reason}");
}

#[test]
fn a_damaged_first_region_table_falls_back_to_the_second_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    write_at(&p, REGION_TABLE1_OFFSET + 100, &[0xff]);
    let v = VhdxFile::open(&p).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    v.read_at(MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 2));
    let info = v.info();
    assert_eq!(info.problems_total, 1, "{info}");
    assert!(
        info.problems[0].contains("checksum") && info.problems[0].contains("0x40000 was used"),
        "{info}"
    );
}

#[test]
fn regions_that_overlap_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    let original = regions(&p);
    let with_bat_at = |offset: u64| -> Vec<RegionEntry> {
        original
            .iter()
            .map(|r| {
                let mut r = *r;
                if r.guid == BAT_REGION {
                    r.file_offset = offset;
                }
                r
            })
            .collect()
    };
    // The BAT at the metadata region's offset.
    put_regions(&p, &with_bat_at(2 * MIB));
    let reason = corrupt_reason(VhdxFile::open(&p));
    assert!(
        reason.contains("BAT region 0x200000..0x300000")
            && reason.contains("metadata region 0x200000..0x300000")
            && reason.contains("overlaps"),
        "{reason}"
    );
    // The BAT over the log the header names.
    put_regions(&p, &with_bat_at(MIB));
    let reason = corrupt_reason(VhdxFile::open(&p));
    assert!(
        reason.contains("BAT region 0x100000..0x200000")
            && reason.contains("log 0x100000..0x200000"),
        "{reason}"
    );
    // In the header section.
    put_regions(&p, &with_bat_at(0));
    let reason = corrupt_reason(VhdxFile::open(&p));
    assert!(reason.contains("header section"), "{reason}");
    // An optional region this crate does not know, over the BAT: still refused.
    let mut extra = original.clone();
    extra.push(RegionEntry {
        guid: vhdx::Uuid::from_u128(0x1234),
        file_offset: 3 * MIB,
        length: MIB as u32,
        required: false,
    });
    put_regions(&p, &extra);
    let reason = corrupt_reason(VhdxFile::open(&p));
    assert!(
        reason.contains("region 00000000-0000-0000-0000-000000001234 0x300000..0x400000")
            && reason.contains("BAT region 0x300000..0x400000"),
        "{reason}"
    );
    // Side by side is fine, and an empty unknown region overlaps nothing.
    extra.last_mut().unwrap().length = 0;
    put_regions(&p, &extra);
    VhdxFile::open(&p).unwrap();
}

#[test]
fn the_physical_sector_size_must_be_512_or_4096() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    let at = metadata_item_offset(&p, PHYSICAL_SECTOR_SIZE);
    for bad in [0u32, 1000, 8192] {
        write_at(&p, at, &bad.to_le_bytes());
        let reason = corrupt_reason(VhdxFile::open(&p));
        assert!(
            reason.contains(&format!(
                "physical sector size {bad} is neither 512 nor 4096"
            )),
            "{reason}"
        );
    }
    for good in [512u32, 4096] {
        write_at(&p, at, &good.to_le_bytes());
        assert_eq!(vhdx::info(&p).unwrap().physical_sector_size, good);
    }
}

#[test]
fn blocks_past_the_end_of_the_file_are_counted_and_fail_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    // Cut the file inside block 2 (at 6 MiB): blocks 2 and 3 are no longer all there.
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(6 * MIB + 12345)
        .unwrap();
    let v = VhdxFile::open(&p).unwrap();
    let info = v.info();
    assert_eq!(info.blocks_present, 4);
    assert_eq!(info.problems_total, 2, "{info}");
    assert!(
        info.problems[0].starts_with("payload block 2 (BAT entry 2) at file offset 0x600000")
            && info.problems[0].contains("past the end of the file (0x603039)"),
        "{info}"
    );
    assert!(info.problems[1].starts_with("payload block 3"), "{info}");
    assert!(
        info.to_string().contains("problems:             2\n"),
        "{info}"
    );
    let mut buf = vec![0u8; 4096];
    v.read_at(MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 2));
    // Even the part of block 2 that is still in the file is not returned.
    for at in [2 * MIB, 3 * MIB + 8192] {
        match v.read_at(at, &mut buf) {
            Err(Error::Corrupt { what, reason, .. }) => {
                assert_eq!(what, "BAT entry");
                assert!(reason.contains("past the end of the file"), "{reason}");
            }
            other => panic!("expected the read to be refused, got {other:?}"),
        }
    }
    // A write could append a block where the BAT already places block 3: refused.
    let reason = corrupt_reason(VhdxFile::open_rw(&p));
    assert!(
        reason.contains("2 problems, the first") && reason.contains("refusing to open for writing"),
        "{reason}"
    );
}

#[test]
fn blocks_over_the_header_section_the_log_regions_or_other_blocks_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    put_bat_entry(&p, 0, present(0)); // the header section
    put_bat_entry(&p, 1, present(1)); // the log
    put_bat_entry(&p, 2, present(3)); // the BAT region itself
    put_bat_entry(&p, 3, present(7)); // fine on its own
    put_bat_entry(&p, 5, present(7)); // the same block as block 3
    put_bat_entry(&p, 6, present(1 << 40)); // far past the end
    let v = VhdxFile::open(&p).unwrap();
    let info = v.info();
    assert_eq!(info.problems_total, 5, "{info}");
    let want = [
        "payload block 0 (BAT entry 0) at file offset 0x0: the block (0x100000 bytes) overlaps the header section 0x0..0x100000",
        "payload block 1 (BAT entry 1) at file offset 0x100000: the block (0x100000 bytes) overlaps the log 0x100000..0x200000",
        "payload block 2 (BAT entry 2) at file offset 0x300000: the block (0x100000 bytes) overlaps the BAT region 0x300000..0x400000",
        "payload block 6 (BAT entry 6) at file offset 0x1000000000000000: the block (0x100000 bytes) ends at 0x1000000000100000, past the end of the file (0x800000)",
        "payload block 5 (BAT entry 5) at file offset 0x700000 overlaps payload block 3 (BAT entry 3), which ends at 0x800000",
    ];
    assert_eq!(info.problems, want, "{info}");
    let mut buf = [0u8; 512];
    for block in [0u64, 1, 2, 6] {
        let e = v.read_at(block * MIB, &mut buf).unwrap_err();
        assert!(e.to_string().contains("bad BAT entry"), "{e}");
    }
    // Blocks 3 and 5 share a spot: each reads it (info reports the clash).
    v.read_at(3 * MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 4));
}

#[test]
fn states_a_dynamic_disk_may_not_use_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    put_bat_entry(
        &p,
        0,
        BatEntry {
            state: PAYLOAD_PARTIALLY_PRESENT,
            file_offset_mb: 4,
        },
    );
    put_bat_entry(
        &p,
        1,
        BatEntry {
            state: 4,
            file_offset_mb: 0,
        },
    );
    // Undefined, zero and both unmapped values are fine, whatever their offset field says.
    for (i, state) in [(4u64, 1u8), (5, 2), (6, 3), (7, 5)] {
        put_bat_entry(
            &p,
            i,
            BatEntry {
                state,
                file_offset_mb: 0,
            },
        );
    }
    let info = vhdx::info(&p).unwrap();
    assert_eq!(
        info.problems,
        [
            "payload block 0 (BAT entry 0): state 7 is for differencing disks only",
            "payload block 1 (BAT entry 1): state 4 is reserved",
        ],
        "{info}"
    );
}

#[test]
fn a_sound_disk_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    let p = disk(dir.path());
    let info = vhdx::info(&p).unwrap();
    assert_eq!((info.problems_total, info.problems.len()), (0, 0), "{info}");
    assert!(info.to_string().contains("problems:             none"));
}

#[test]
fn more_problems_than_listed_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.vhdx");
    create_dynamic(&p, 64 * MIB, MIB as u32, 512).unwrap();
    for block in 0..30 {
        put_bat_entry(&p, block, present(100 + block));
    }
    let info = vhdx::info(&p).unwrap();
    assert_eq!(info.problems_total, 30);
    assert_eq!(info.problems.len(), vhdx::MAX_LISTED_PROBLEMS);
    assert!(
        info.to_string()
            .contains("problems:             30 (the first 10 listed)"),
        "{info}"
    );
}

/// A child made from an 8 MiB base, then one of its IsVirtualDisk items changed.
fn child_with(dir: &Path, item: vhdx::Uuid, value: &[u8]) -> PathBuf {
    let base = dir.join("base.vhdx");
    create_dynamic(&base, 8 * MIB, MIB as u32, 512).unwrap();
    let child = dir.join("child.vhdx");
    create_differencing(&child, &base, &ParentLocator::sibling("base.vhdx")).unwrap();
    write_at(&child, metadata_item_offset(&child, item), value);
    child
}

#[test]
fn a_parent_of_another_size_is_refused_but_info_describes_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let child = child_with(dir.path(), VIRTUAL_DISK_SIZE, &(16 * MIB).to_le_bytes());
    match VhdxFile::open(&child) {
        Err(e @ Error::ParentIncompatible { .. }) => {
            assert!(
                e.to_string()
                    .contains("its virtual size is 8388608 bytes, the child's 16777216"),
                "{e}"
            )
        }
        other => panic!("expected ParentIncompatible, got {other:?}"),
    }
    let info = vhdx::info(&child).unwrap();
    assert_eq!(info.virtual_size, 16 * MIB);
    assert_eq!(info.parent, None);
    let problem = info.parent_problem.clone().unwrap();
    assert!(
        problem.contains("base.vhdx") && problem.contains("virtual size"),
        "{problem}"
    );
    assert!(info
        .to_string()
        .contains("parent file:          not used: "));
    assert_eq!(info.problems_total, 0, "{info}");
}

#[test]
fn a_parent_of_another_sector_size_is_refused_but_info_describes_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let child = child_with(dir.path(), LOGICAL_SECTOR_SIZE, &4096u32.to_le_bytes());
    assert!(matches!(
        VhdxFile::open(&child),
        Err(Error::ParentIncompatible { .. })
    ));
    let info = vhdx::info(&child).unwrap();
    assert_eq!(info.logical_sector_size, 4096);
    let problem = info.parent_problem.unwrap();
    assert!(
        problem.contains("its logical sector size is 512, the child's 4096"),
        "{problem}"
    );
}

#[test]
fn info_describes_a_child_whose_parent_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let child = child_with(dir.path(), VIRTUAL_DISK_SIZE, &(8 * MIB).to_le_bytes());
    // Both region tables of the parent damaged.
    let base = dir.path().join("base.vhdx");
    write_at(&base, REGION_TABLE1_OFFSET, b"xxxx");
    write_at(&base, REGION_TABLE2_OFFSET, b"xxxx");
    assert!(VhdxFile::open(&child).is_err());
    let info = vhdx::info(&child).unwrap();
    let problem = info.parent_problem.unwrap();
    assert!(
        problem.contains("base.vhdx") && problem.contains("region table"),
        "{problem}"
    );
}

/// A parent-locator value's byte length is a 16-bit field: a path too long for it is refused
/// rather than written with a wrapped length (a child naming some other parent), and nothing is
/// left behind; a long path that fits round-trips.
#[test]
fn parent_locator_values_must_fit_their_length_field() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.vhdx");
    create_dynamic(&base, 8 << 20, 1 << 20, 512).unwrap();
    let child = tmp.path().join("child.vhdx");
    let mut loc = ParentLocator::sibling("base.vhdx");
    loc.absolute_win32_path = Some(format!(r"C:\{}\base.vhdx", "a".repeat(33_000)));
    let err = create_differencing(&child, &base, &loc).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(
        err.to_string()
            .contains("absolute_win32_path value of 33013 UTF-16 units is too long"),
        "{err}"
    );
    assert!(!child.exists());

    let long = format!(r"C:\{}\base.vhdx", "b".repeat(1000));
    loc.absolute_win32_path = Some(long.clone());
    create_differencing(&child, &base, &loc).unwrap();
    let f = VhdxFile::open(&child).unwrap();
    assert!(f.parent().is_some());
    assert!(f
        .info()
        .parent_locator
        .iter()
        .any(|(k, v)| k == "absolute_win32_path" && *v == long));
}
