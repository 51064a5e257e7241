//! Fuzz target: log recovery must never panic, never grow the hive beyond what the primary
//! and the logs can fill, and return the primary unchanged when no entry applied.
//! Input layout: u32 primary length, u32 first-log length, then the primary, log 1, log 2.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = |at: usize| {
        data.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let rest = data.get(8..).unwrap_or(&[]);
    let (primary, rest) = rest.split_at(len(0).min(rest.len()));
    let (log1, log2) = rest.split_at(len(4).min(rest.len()));
    if let Ok(r) = regf::recover(primary, &[log1, log2]) {
        assert!(r.bytes.len() <= primary.len() + log1.len() + log2.len());
        if r.entries_applied() == 0 {
            assert!(r.bytes == primary);
        }
        let _ = regf::Hive::parse_lenient(&r.bytes);
    }
});
