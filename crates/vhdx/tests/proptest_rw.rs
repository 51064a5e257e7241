//! Property tests: the dynamic-disk writer and the reader agree with an in-memory model, and
//! damaged files (metadata, BAT, parent locator, headers with fixed-up checksums) give errors,
//! never panics.

use std::os::unix::fs::FileExt;

use proptest::prelude::*;
use vhdx::format::{
    checksum_with_zeroed_field, HEADER1_OFFSET, HEADER2_OFFSET, REGION_TABLE1_OFFSET,
};
use vhdx::{create_differencing, create_dynamic, ParentLocator, VhdxFile};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 8 * MIB;

fn write_op() -> impl Strategy<Value = (u64, usize, u8)> {
    (0..SIZE, 1usize..300_000, any::<u8>()).prop_map(|(off, len, b)| {
        let len = len.min((SIZE - off) as usize);
        (off, len, b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn writes_read_back_like_a_flat_model(ops in prop::collection::vec(write_op(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.vhdx");
        create_dynamic(&path, SIZE, MIB as u32, 512).unwrap();
        let mut model = vec![0u8; SIZE as usize];
        let mut disk = VhdxFile::open_rw(&path).unwrap();
        for (off, len, b) in &ops {
            let data = vec![*b; *len];
            disk.write_at(*off, &data).unwrap();
            model[*off as usize..*off as usize + len].copy_from_slice(&data);
        }
        disk.flush().unwrap();
        drop(disk);
        let disk = VhdxFile::open(&path).unwrap();
        let mut all = vec![0u8; SIZE as usize];
        disk.read_at(0, &mut all).unwrap();
        prop_assert!(all == model);
        // Only blocks holding a non-zero byte take space in the file.
        let nonzero = model.chunks(MIB as usize).filter(|c| c.iter().any(|&x| x != 0)).count() as u64;
        prop_assert!(disk.info().blocks_present <= nonzero + 2 * ops.len() as u64);
        prop_assert!(disk.info().blocks_present >= nonzero);
    }

    #[test]
    fn damaged_files_fail_cleanly(
        region in 0usize..5,
        at in 0u64..256,
        byte in any::<u8>(),
        fix_crc in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("b.vhdx");
        create_dynamic(&base, SIZE, MIB as u32, 512).unwrap();
        let mut d = VhdxFile::open_rw(&base).unwrap();
        d.write_at(MIB + 7, &[9u8; 5000]).unwrap();
        drop(d);
        let child = dir.path().join("c.vhdx");
        create_differencing(&child, &base, &ParentLocator::sibling("b.vhdx")).unwrap();
        // Targets: header 1, region table 1, metadata table + items, BAT, locator item.
        let (file, off) = match region {
            0 => (&base, HEADER1_OFFSET + at % 96),
            1 => (&base, REGION_TABLE1_OFFSET + at % 80),
            2 => (&base, 2 * MIB + if at < 128 { at } else { 65536 + at % 48 }),
            3 => (&base, 3 * MIB + at),
            _ => (&child, 2 * MIB + 65536 + 40 + at),
        };
        let f = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
        f.write_all_at(&[byte], off).unwrap();
        if fix_crc && region <= 1 {
            // Re-seal the damaged structure so the decoder gets past its checksum.
            let (start, len) = if region == 0 { (HEADER1_OFFSET, 4096) } else { (REGION_TABLE1_OFFSET, 65536) };
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, start).unwrap();
            let crc = checksum_with_zeroed_field(&b, 4);
            f.write_all_at(&crc.to_le_bytes(), start + 4).unwrap();
            // Make header 1 the current one.
            if region == 0 {
                f.write_all_at(&[0u8; 4], HEADER2_OFFSET).unwrap();
            }
        }
        drop(f);
        for p in [&base, &child] {
            if let Ok(d) = VhdxFile::open(p) {
                let mut buf = vec![0u8; 3 * MIB as usize];
                let _ = d.read_at(0, &mut buf);
                let _ = d.read_at(d.virtual_size().saturating_sub(512), &mut buf[..512]);
                let _ = d.info().to_string();
            }
        }
    }
}
