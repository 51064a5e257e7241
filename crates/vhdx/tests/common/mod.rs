//! Helpers shared by the tests that damage VHDX files by hand: positioned reads and writes, the
//! current header, the region table, metadata items and BAT entries.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use vhdx::format::*;
use vhdx::Uuid;

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    b
}

pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(data, offset)
        .unwrap();
}

/// The current header and the offset of the other slot.
pub fn current_header(path: &Path) -> (Header, u64) {
    let h1 = Header::decode(&read_at(path, HEADER1_OFFSET, HEADER_SIZE));
    let h2 = Header::decode(&read_at(path, HEADER2_OFFSET, HEADER_SIZE));
    match (h1, h2) {
        (Ok(a), Ok(b)) if a.sequence_number > b.sequence_number => (a, HEADER2_OFFSET),
        (_, Ok(b)) => (b, HEADER1_OFFSET),
        (Ok(a), Err(_)) => (a, HEADER2_OFFSET),
        _ => panic!("no valid header in {}", path.display()),
    }
}

/// The region table entries of the first copy.
pub fn regions(path: &Path) -> Vec<RegionEntry> {
    decode_region_table(&read_at(path, REGION_TABLE1_OFFSET, REGION_TABLE_SIZE)).unwrap()
}

/// The region entry with `guid`.
pub fn region(path: &Path, guid: Uuid) -> RegionEntry {
    *regions(path).iter().find(|r| r.guid == guid).unwrap()
}

/// Writes `entries` to both region table copies.
pub fn put_regions(path: &Path, entries: &[RegionEntry]) {
    let table = encode_region_table(entries);
    write_at(path, REGION_TABLE1_OFFSET, &table);
    write_at(path, REGION_TABLE2_OFFSET, &table);
}

/// File offset of the system metadata item `id`.
pub fn metadata_item_offset(path: &Path, id: Uuid) -> u64 {
    let meta = region(path, METADATA_REGION);
    let table = read_at(path, meta.file_offset, METADATA_TABLE_SIZE);
    let items = decode_metadata_table(&table, meta.length.into()).unwrap();
    let item = items.iter().find(|e| e.item_id == id).unwrap();
    meta.file_offset + u64::from(item.offset)
}

/// Stores the raw BAT entry `index`.
pub fn put_bat_entry(path: &Path, index: u64, entry: BatEntry) {
    let bat = region(path, BAT_REGION);
    write_at(
        path,
        bat.file_offset + index * 8,
        &entry.to_raw().to_le_bytes(),
    );
}
