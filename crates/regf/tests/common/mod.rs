//! Helpers shared by the integration tests: locating and decompressing the real hives in
//! shared/testdata/hives, and comparing trees.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use regf::{Hive, Key};

/// Every real hive in shared/testdata that is expected to parse: the hives, then the BCD
/// stores (format 1.3 hives written by bcdedit/Windows setup), named relative to
/// shared/testdata/hives so [`load`] finds both.
pub const GOOD_HIVES: &[&str] = &[
    "nt-hive-offreg-testhive",
    "regipy-NTUSER.DAT.xz",
    "regipy-SECURITY.xz",
    "regipy-SYSTEM-offreg-compacted.xz",
    "regipy-SYSTEM-win10-1709-dirty.xz",
    "yarp-BigDataHive",
    "yarp-OffHive",
    "yarp-System_Delta",
    "yarp-UnicodeHive",
    "yarp-WrongOrderHive",
    "yarp-NewDirtyHive1/NewDirtyHive",
    "yarp-NewDirtyHive1/RecoveredHive_Windows10",
    "../bcd/bcdsys-empty-createstore.BCD",
    "../bcd/win10-install-media-efi.BCD",
    "../bcd/windeploy-bios-mbr.BCD",
    "../bcd/windeploy-uefi-locate.BCD",
    "../bcd/windows2go-system-gpt.BCD",
];

/// The minor format version in a hive file's base block.
pub fn minor_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[24..28].try_into().expect("base block"))
}

/// Signatures ("nk", "lf", "db", ...) of every allocated cell of a hive file, by walking its
/// bins (data cells are included, so callers look only for what their data cannot start with).
pub fn cell_signatures(bytes: &[u8]) -> Vec<[u8; 2]> {
    let bins = &bytes[4096..];
    let mut out = Vec::new();
    let mut at = 0;
    while at + 32 <= bins.len() {
        assert_eq!(&bins[at..at + 4], b"hbin", "bin at {at:#x}");
        let size = u32::from_le_bytes(bins[at + 8..at + 12].try_into().expect("u32")) as usize;
        let mut c = at + 32;
        while c < at + size {
            let raw = i32::from_le_bytes(bins[c..c + 4].try_into().expect("i32"));
            if raw < 0 {
                out.push([bins[c + 4], bins[c + 5]]);
            }
            c += raw.unsigned_abs() as usize;
        }
        at += size;
    }
    out
}

pub fn hives_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/hives"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

/// The bytes of a hive from shared/testdata/hives (decompressing .xz), or None (skip).
pub fn load(name: &str) -> Option<Vec<u8>> {
    let path = hives_dir()?.join(name);
    let raw = match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) => {
            eprintln!("skipping: {} not found", path.display());
            return None;
        }
    };
    if name.ends_with(".xz") {
        let mut out = Vec::new();
        xz2::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("decompress test hive");
        Some(out)
    } else {
        Some(raw)
    }
}

/// Finds the first difference between two trees, ignoring subkey order and the nk flag bits
/// the writer recomputes (compressed name, hive entry); None when they are the same.
pub fn tree_diff(a: &Key, b: &Key, path: &str) -> Option<String> {
    let mask = !(0x0020 | 0x0004 | 0x0008);
    macro_rules! field {
        ($f:ident) => {
            if a.$f != b.$f {
                return Some(format!(
                    "{path}: {} differs: {:?} vs {:?}",
                    stringify!($f),
                    a.$f,
                    b.$f
                ));
            }
        };
    }
    field!(name);
    field!(class);
    field!(security);
    field!(last_written);
    field!(layer);
    field!(inherit_class);
    field!(user_flags);
    field!(work_var);
    if a.flags & mask != b.flags & mask {
        return Some(format!("{path}: flags {:#x} vs {:#x}", a.flags, b.flags));
    }
    if a.values != b.values {
        return Some(format!("{path}: values differ"));
    }
    if a.subkeys.len() != b.subkeys.len() {
        return Some(format!(
            "{path}: {} vs {} subkeys",
            a.subkeys.len(),
            b.subkeys.len()
        ));
    }
    for (x, y) in sorted(a).into_iter().zip(sorted(b)) {
        if let Some(d) = tree_diff(x, y, &format!("{path}\\{}", x.name)) {
            return Some(d);
        }
    }
    None
}

pub fn parse_named(name: &str, bytes: &[u8]) -> Hive {
    Hive::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sorted(k: &Key) -> Vec<&Key> {
    let mut v: Vec<&Key> = k.subkeys.iter().collect();
    v.sort_by(|x, y| upcase::compare_str(&x.name, &y.name));
    v
}

/// The Python interpreter ($CIMKIT_PYTHON, else python3) when it can import `module`; None
/// (after saying the test is skipped) otherwise.
pub fn python_with(module: &str) -> Option<String> {
    let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output();
    if matches!(probe, Ok(o) if o.status.success()) {
        Some(python)
    } else {
        eprintln!("skipping: {python} has no {module} (set CIMKIT_PYTHON to a venv with it)");
        None
    }
}
