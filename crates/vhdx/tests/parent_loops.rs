//! A differencing disk whose parent locator leads back into its own chain must be refused at
//! the first repeat, not followed until the depth limit: every level of the chain keeps its BAT
//! in memory, and a dirty file replayed in memory can make that BAT hundreds of MiB large (its
//! log's LastFileOffset lets the BAT region lie far past the real end of the file).

mod common;

use std::fs;
use std::path::Path;

use common::{current_header, write_at};
use vhdx::format::*;
use vhdx::{create_differencing, create_dynamic, Error, ParentLocator, Uuid, VhdxFile};

/// `p.vhdx`: a differencing disk whose locator names `.\p.vhdx` and whose parent linkage is
/// its own DataWriteGuid, so it is, by every check, its own parent.
fn self_parent(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("p.vhdx");
    let c = dir.join("c.vhdx");
    create_dynamic(&p, 8 * MIB, MIB as u32, 512).unwrap();
    create_differencing(&c, &p, &ParentLocator::sibling("p.vhdx")).unwrap();
    let linkage = VhdxFile::open(&p).unwrap().data_write_guid();
    fs::rename(&c, &p).unwrap();
    let (mut h, other) = current_header(&p);
    h.sequence_number += 1;
    h.data_write_guid = linkage;
    write_at(&p, other, &h.encode());
    p
}

fn assert_loop_refused(p: &Path) {
    match VhdxFile::open(p) {
        Err(Error::Unsupported { reason, .. }) => {
            assert!(reason.contains("loops back"), "{reason}")
        }
        other => panic!("expected the loop to be refused, got {other:?}"),
    }
}

#[test]
fn a_disk_that_is_its_own_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = self_parent(dir.path());
    assert_loop_refused(&p);
}

#[test]
fn a_loop_through_two_disks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // a.vhdx -> b.vhdx -> a.vhdx: two children of one base, each made the other's parent.
    let base = dir.path().join("z.vhdx");
    create_dynamic(&base, 8 * MIB, MIB as u32, 512).unwrap();
    let (a, b) = (dir.path().join("a.vhdx"), dir.path().join("b.vhdx"));
    create_differencing(&a, &base, &ParentLocator::sibling("z.vhdx")).unwrap();
    create_differencing(&b, &base, &ParentLocator::sibling("z.vhdx")).unwrap();
    let linkage = VhdxFile::open(&base).unwrap().data_write_guid();
    // Point each locator at the other (same length as "z.vhdx": UTF-16 in place).
    for (child, other) in [(&a, "b"), (&b, "a")] {
        let mut bytes = fs::read(child).unwrap();
        let needle: Vec<u8> = ".\\z.vhdx"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("relative path in the locator");
        let name: Vec<u8> = other.encode_utf16().flat_map(u16::to_le_bytes).collect();
        bytes[at + 4..at + 6].copy_from_slice(&name);
        fs::write(child, &bytes).unwrap();
        let (mut h, slot) = current_header(child);
        h.sequence_number += 1;
        h.data_write_guid = linkage;
        write_at(child, slot, &h.encode());
    }
    assert_loop_refused(&a);
}

/// The case that made the loop expensive: the self-parent left dirty, with a log entry whose
/// LastFileOffset is 2 TiB, a 64 TiB virtual size and the BAT region moved to 1 TiB. Opened
/// read-only, the log is replayed in memory, which makes the 4 MiB file look 2 TiB long; the
/// 537 MB BAT was then read as zeros (followed to the depth limit, 64 copies of it were kept:
/// 34 GB). Now a BAT larger than the file on disk is refused before anything is allocated.
#[test]
fn a_dirty_self_parent_with_a_huge_bat_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = self_parent(dir.path());
    let bytes = fs::read(&p).unwrap();
    let table =
        |o: u64| decode_region_table(&bytes[o as usize..o as usize + REGION_TABLE_SIZE]).unwrap();
    let mut regions = table(REGION_TABLE1_OFFSET);
    let meta = *regions.iter().find(|r| r.guid == METADATA_REGION).unwrap();
    for r in &mut regions {
        if r.guid == BAT_REGION {
            r.file_offset = 1 << 40;
            r.length = 600 << 20;
        }
    }
    let encoded = encode_region_table(&regions);
    write_at(&p, REGION_TABLE1_OFFSET, &encoded);
    write_at(&p, REGION_TABLE2_OFFSET, &encoded);
    let m = meta.file_offset as usize;
    let items =
        decode_metadata_table(&bytes[m..m + METADATA_TABLE_SIZE], meta.length.into()).unwrap();
    let size_item = items
        .iter()
        .find(|e| e.item_id == VIRTUAL_DISK_SIZE)
        .unwrap();
    write_at(
        &p,
        meta.file_offset + u64::from(size_item.offset),
        &MAX_VIRTUAL_SIZE.to_le_bytes(),
    );
    let (mut h, other) = current_header(&p);
    let log_guid = Uuid::from_u128(0x1096);
    let entry = LogEntry {
        header: LogEntryHeader {
            entry_length: 0,
            tail: 0,
            sequence_number: 1,
            descriptor_count: 0,
            log_guid,
            flushed_file_offset: bytes.len() as u64,
            last_file_offset: 2 << 40,
        },
        writes: vec![LogWrite::Zero {
            file_offset: 1 << 40,
            length: LOG_SECTOR_SIZE as u64,
        }],
    };
    write_at(&p, h.log_offset, &entry.encode());
    h.sequence_number += 1;
    h.log_guid = log_guid;
    write_at(&p, other, &h.encode());
    match VhdxFile::open(&p) {
        Err(Error::Corrupt { what, reason, .. }) => assert!(
            what == "BAT" && reason.contains("537001984 bytes, more than the file's 4194304"),
            "{reason}"
        ),
        other => panic!("expected the BAT to be refused, got {other:?}"),
    }
}
