//! Helpers shared by the tests that damage VHDX files by hand: positioned reads and writes, and
//! the current header.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use vhdx::format::{Header, HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SIZE};

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
