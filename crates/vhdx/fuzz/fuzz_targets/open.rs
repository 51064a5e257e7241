//! Fuzz target: opening and reading a damaged VHDX. At start-up three small disks are built in
//! /tmp/fuzz-vhdx-<pid>: a dynamic disk with a few blocks written and a GPT, the same disk left
//! dirty with a two-entry log, and a differencing child of a pristine copy of the first. Each
//! input patches a working copy of one of them:
//!
//!   byte 0: bits 0-1 pick the disk (3 = the dirty one again); bit 2 recomputes the CRC-32C of
//!           the headers, region tables and the log entries the current header points at after
//!           patching (so damage reaches past the checksums); bit 3 truncates the file to the
//!           next u32 (in 4 KiB units) first; bit 4 also opens it read-write and writes to it.
//!   then patches: u32 file offset (taken modulo the file length), u8 length, that many bytes.
//!
//! Then: open, `info`, `read_partition_info`, reads through the BAT (the first and last 64 KiB,
//! every block start, and a window at an offset chosen by the input), read-write open with
//! log replay into the file and a write. Only typed errors may come out; the working copy is
//! restored afterwards (only the 64 KiB chunks a run touched are written, both ways).
#![no_main]

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vhdx::format::*;
use vhdx::{Uuid, VhdxFile};

struct Disk {
    /// The working copy the input damages.
    path: PathBuf,
    pristine: Vec<u8>,
}

/// The templates' bytes, damaged in place by a run and restored after it.
fn working_copies() -> &'static Mutex<Vec<Vec<u8>>> {
    static W: OnceLock<Mutex<Vec<Vec<u8>>>> = OnceLock::new();
    W.get_or_init(|| Mutex::new(disks().iter().map(|d| d.pristine.clone()).collect()))
}

const DISK_SIZE: u64 = 8 * MIB;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// The current header and the offset of the other slot.
fn current_header(bytes: &[u8]) -> (Header, u64) {
    let slot = |off: u64| Header::decode(&bytes[off as usize..off as usize + HEADER_SIZE]);
    match (slot(HEADER1_OFFSET), slot(HEADER2_OFFSET)) {
        (Ok(a), Ok(b)) if a.sequence_number > b.sequence_number => (a, HEADER2_OFFSET),
        (_, Ok(b)) => (b, HEADER1_OFFSET),
        (Ok(a), Err(_)) => (a, HEADER2_OFFSET),
        _ => panic!("template has no valid header"),
    }
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(data, offset).expect("write");
}

/// A dynamic disk with a scratch disk's GPT and data in blocks 0 and 5.
fn make_dynamic(path: &Path) {
    vhdx::create_dynamic(path, DISK_SIZE, MIB as u32, 512).expect("create");
    let mut v = VhdxFile::open_rw(path).expect("open_rw");
    let layout = vhdx::gpt::GptLayout {
        sector_size: 512,
        sectors: DISK_SIZE / 512,
    };
    // A scratch disk's two partitions: a small reserved one, then basic data.
    let part =
        |type_guid: u128, unique: u128, first_lba: u64, last_lba: u64| vhdx::gpt::GptPartition {
            type_guid: Uuid::from_u128(type_guid),
            unique_guid: Uuid::from_u128(unique),
            first_lba,
            last_lba,
            attributes: 0,
            name: "part".into(),
        };
    let first = layout.first_usable();
    let parts = [
        part(
            0xe3c9e316_0b5c_4db8_817d_f92df00215ae,
            0x1233,
            first,
            first + 63,
        ),
        part(
            0xebd0a0a2_b9e5_4433_87c0_68b6b72699c7,
            0x1234,
            first + 64,
            layout.last_usable(),
        ),
    ];
    let (primary, backup) = vhdx::gpt::build(&layout, &Uuid::from_u128(0x5678), &parts);
    v.write_at(0, &primary).expect("gpt");
    v.write_at(layout.backup_entries_lba() * 512, &backup)
        .expect("backup gpt");
    v.write_at(5 * MIB + 4096, &pattern(0x5a, 8192))
        .expect("data");
    v.flush().expect("flush");
}

/// Leaves `path` dirty: two log entries (the second zeroes a range and writes a BAT sector)
/// and LogGuid set in a newer header.
fn make_dirty(path: &Path) {
    let bytes = fs::read(path).expect("read");
    let (mut h, other) = current_header(&bytes);
    let log_guid = Uuid::from_u128(0x0bad_c0de);
    let end = bytes.len() as u64;
    let entry = |seq: u64, writes: Vec<LogWrite>| LogEntry {
        header: LogEntryHeader {
            entry_length: 0,
            tail: 0,
            sequence_number: seq,
            descriptor_count: 0,
            log_guid,
            flushed_file_offset: end,
            last_file_offset: end,
        },
        writes,
    };
    let mut data = Box::new([0u8; LOG_SECTOR_SIZE]);
    data.copy_from_slice(&pattern(0xc3, LOG_SECTOR_SIZE));
    let e1 = entry(
        7,
        vec![LogWrite::Data {
            file_offset: end - 2 * LOG_SECTOR_SIZE as u64,
            bytes: data,
        }],
    )
    .encode();
    let mut bat_sector = Box::new([0u8; LOG_SECTOR_SIZE]);
    let bat_region = vhdx::format::decode_region_table(
        &bytes[REGION_TABLE1_OFFSET as usize..REGION_TABLE1_OFFSET as usize + REGION_TABLE_SIZE],
    )
    .expect("region table")
    .into_iter()
    .find(|r| r.guid == BAT_REGION)
    .expect("BAT region");
    let bat_at = bat_region.file_offset as usize;
    bat_sector.copy_from_slice(&bytes[bat_at..bat_at + LOG_SECTOR_SIZE]);
    bat_sector[8..16].copy_from_slice(&u64::to_le_bytes(u64::from(PAYLOAD_ZERO)));
    let e2 = entry(
        8,
        vec![
            LogWrite::Zero {
                file_offset: end - 4 * LOG_SECTOR_SIZE as u64,
                length: 2 * LOG_SECTOR_SIZE as u64,
            },
            LogWrite::Data {
                file_offset: bat_region.file_offset,
                bytes: bat_sector,
            },
        ],
    )
    .encode();
    write_at(path, h.log_offset, &e1);
    write_at(path, h.log_offset + e1.len() as u64, &e2);
    h.sequence_number += 1;
    h.log_guid = log_guid;
    write_at(path, other, &h.encode());
}

fn disks() -> &'static [Disk] {
    static D: OnceLock<Vec<Disk>> = OnceLock::new();
    D.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/fuzz-vhdx-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("fuzz dir");
        let dynamic = dir.join("dynamic.vhdx");
        make_dynamic(&dynamic);
        let dirty = dir.join("dirty.vhdx");
        fs::copy(&dynamic, &dirty).expect("copy");
        make_dirty(&dirty);
        let child_dir = dir.join("child");
        fs::create_dir_all(&child_dir).expect("child dir");
        fs::copy(&dynamic, child_dir.join("base.vhdx")).expect("copy");
        let child = child_dir.join("child.vhdx");
        vhdx::create_differencing(
            &child,
            &child_dir.join("base.vhdx"),
            &vhdx::ParentLocator::sibling("base.vhdx"),
        )
        .expect("child");
        // The templates must reach what they are meant to exercise.
        vhdx::read_partition_info(&dynamic).expect("the GPT reads back");
        let replay = VhdxFile::open(&dirty)
            .expect("dirty opens")
            .log_replay()
            .clone();
        assert!(
            matches!(replay, vhdx::LogReplay::InMemory(ref r) if r.entries == 2),
            "{replay}"
        );
        let c = VhdxFile::open(&child).expect("child opens");
        assert!(c.parent().is_some());
        drop(c);
        [dynamic, dirty, child]
            .into_iter()
            .map(|path| {
                VhdxFile::open(&path).expect("template opens");
                let pristine = fs::read(&path).expect("read template");
                Disk { path, pristine }
            })
            .collect()
    })
}

/// CRC-32C over `len` bytes of the circular log from `at`, written back at `at + 4`.
fn fix_log_entry(b: &mut [u8], log: std::ops::Range<usize>, at: usize, len: usize) {
    let log_len = log.len();
    let mut entry: Vec<u8> = (0..len)
        .map(|i| b[log.start + (at + i) % log_len])
        .collect();
    let crc = checksum_with_zeroed_field(&entry, 4).to_le_bytes();
    entry[4..8].copy_from_slice(&crc);
    for (i, x) in entry.iter().enumerate().take(8) {
        b[log.start + (at + i) % log_len] = *x;
    }
}

/// Recomputes the checksums; returns the (offset, length) ranges it rewrote.
fn fix_checksums(b: &mut [u8]) -> Vec<(usize, usize)> {
    let mut fixed = Vec::new();
    for (off, size) in [
        (HEADER1_OFFSET, HEADER_SIZE),
        (HEADER2_OFFSET, HEADER_SIZE),
        (REGION_TABLE1_OFFSET, REGION_TABLE_SIZE),
        (REGION_TABLE2_OFFSET, REGION_TABLE_SIZE),
    ] {
        let Some(s) = b.get_mut(off as usize..off as usize + size) else {
            continue;
        };
        let crc = checksum_with_zeroed_field(s, 4);
        put_u32(s, 4, crc);
        fixed.push((off as usize + 4, 4));
    }
    let headers: Vec<Header> = [HEADER1_OFFSET, HEADER2_OFFSET]
        .iter()
        .filter_map(|&o| Header::decode(b.get(o as usize..)?).ok())
        .collect();
    for h in headers {
        let (Ok(start), Ok(len)) = (usize::try_from(h.log_offset), usize::try_from(h.log_length))
        else {
            continue;
        };
        let Some(end) = start.checked_add(len).filter(|&e| e <= b.len() && len > 0) else {
            continue;
        };
        for at in (0..len).step_by(LOG_SECTOR_SIZE) {
            if b.get(start + at..start + at + 4) != Some(&LOG_ENTRY_SIGNATURE[..]) {
                continue;
            }
            let entry_len = le_u32(b, start + at + 8) as usize;
            if entry_len >= 64 && entry_len <= len {
                fix_log_entry(b, start..end, at, entry_len);
                fixed.push((start + at, 8.min(len - at)));
                if at + 8 > len {
                    fixed.push((start, 8));
                }
            }
        }
    }
    fixed
}

const CHUNK: usize = 64 << 10;

fn chunk(b: &[u8], c: usize) -> &[u8] {
    &b[c * CHUNK..((c + 1) * CHUNK).min(b.len())]
}

fn exercise(path: &Path, window: u64) {
    let _ = vhdx::info(path);
    let _ = vhdx::read_partition_info(path);
    let Ok(v) = VhdxFile::open(path) else {
        return;
    };
    let info = v.info();
    let _ = (
        info.log_replay.to_string(),
        v.log_replay(),
        v.parent().is_some(),
    );
    let size = v.virtual_size();
    let mut buf = vec![0u8; 64 << 10];
    let _ = v.read_at(0, &mut buf);
    let _ = v.read_at(size.saturating_sub(buf.len() as u64), &mut buf);
    let block = u64::from(v.block_size()).max(1);
    for b in (0..size.div_ceil(block)).take(64) {
        let _ = v.read_at(b * block, &mut buf[..4096]);
    }
    if size > 0 {
        let _ = v.read_at(window % size, &mut buf[..8192]);
    }
    // Reads past the end are errors, not panics.
    let _ = v.read_at(size, &mut buf[..1]);
    let _ = v.read_at(u64::MAX - 10, &mut buf[..100]);
}

/// Marks the chunks `at..at + len` touches.
fn touch(touched: &mut BTreeSet<usize>, at: usize, len: usize) {
    if len > 0 {
        touched.extend(at / CHUNK..=(at + len - 1) / CHUNK);
    }
}

fuzz_target!(|data: &[u8]| {
    let disks = disks();
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let which = [0, 1, 2, 1][usize::from(mode & 3)];
    let disk = &disks[which];
    let mut work = working_copies().lock().expect("working copies");
    let bytes = &mut work[which];
    let mut len = bytes.len();
    if mode & 8 != 0 {
        let Some(n) = rest.get(..4) else { return };
        let units = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
        len = len.min(units.saturating_mul(LOG_SECTOR_SIZE));
        rest = &rest[4..];
    }
    // The working copy (in memory and on disk) equals the template between runs; only the
    // 64 KiB chunks a run changes are written, then restored.
    let mut touched = BTreeSet::new();
    let mut window = 0u64;
    while rest.len() >= 5 {
        let off = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let n = usize::from(rest[4]);
        rest = &rest[5..];
        let patch = &rest[..n.min(rest.len())];
        rest = &rest[patch.len()..];
        window = window.wrapping_mul(31).wrapping_add(off as u64);
        if len == 0 {
            continue;
        }
        let at = off % len;
        let end = (at + patch.len()).min(len);
        bytes[at..end].copy_from_slice(&patch[..end - at]);
        touch(&mut touched, at, end - at);
    }
    if mode & 4 != 0 {
        for (at, n) in fix_checksums(&mut bytes[..len]) {
            touch(&mut touched, at, n);
        }
    }
    let rw = mode & 16 != 0;
    {
        let f = OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .expect("open working copy");
        if len < bytes.len() {
            f.set_len(len as u64).expect("truncate working copy");
        }
        for &c in &touched {
            f.write_all_at(chunk(&bytes[..len], c), (c * CHUNK) as u64)
                .expect("patch working copy");
        }
    }
    exercise(&disk.path, window.wrapping_mul(4096));
    if rw {
        if let Ok(mut v) = VhdxFile::open_rw(&disk.path) {
            let _ = v.write_at(window % v.virtual_size().max(1), &[0xa5; 5000]);
            let _ = v.flush();
            drop(v);
            // What we wrote, we must be able to open again.
            VhdxFile::open(&disk.path).expect("a disk we wrote reopens");
        }
    }
    for &c in &touched {
        let range = c * CHUNK..((c + 1) * CHUNK).min(bytes.len());
        bytes[range.clone()].copy_from_slice(&disk.pristine[range]);
    }
    if rw || len < bytes.len() {
        fs::write(&disk.path, &disk.pristine).expect("restore working copy");
    } else {
        let f = OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .expect("open working copy");
        for c in touched {
            f.write_all_at(chunk(&disk.pristine, c), (c * CHUNK) as u64)
                .expect("restore working copy");
        }
    }
});
