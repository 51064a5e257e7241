//! go-winio's "backuptar" dialect: how a Windows file's metadata rides in PAX records of a layer
//! tar. Owns the record names and the encoders/decoders for times, EAs, security descriptors and
//! reparse points, shared by import (tar → CIM) and export (CIM → tar). Source: go-winio
//! `backuptar/tar.go`, `strconv.go`, `ea.go`, `reparse.go` (layer-tar.md §B2-B8).

mod ea;
mod reparse;
mod sddl;
mod times;

use std::collections::BTreeMap;

use base64::Engine as _;
use cimfs::FileMetadata;

use crate::error::{quoted, shorten};

pub use ea::{decode_extended_attributes, encode_extended_attributes, ExtendedAttribute};
pub use reparse::{
    decode_reparse_point, encode_reparse_point, ReparsePoint, IO_REPARSE_TAG_MOUNT_POINT,
    IO_REPARSE_TAG_SYMLINK, SYMLINK_FLAG_RELATIVE,
};
pub use sddl::{
    control, sddl_to_security_descriptor, security_descriptor_to_sddl, sid_from_string,
    sid_to_string, SddlError,
};
pub use times::{
    filetime_to_pax_time, filetime_to_unix, format_pax_time, parse_pax_time, pax_time_to_filetime,
    unix_secs_to_filetime, unix_to_filetime, UnixTime, GO_ZERO_TIME_FILETIME, MAX_FILETIME,
    UNIX_EPOCH_FILETIME,
};

/// PAX record: Win32 file attributes, decimal.
pub const PAX_FILE_ATTRIBUTES: &str = "MSWINDOWS.fileattr";
/// PAX record: base64 (standard, padded) of a binary self-relative security descriptor.
pub const PAX_RAW_SECURITY_DESCRIPTOR: &str = "MSWINDOWS.rawsd";
/// PAX record: SDDL security descriptor (legacy writers; used only when rawsd is absent).
pub const PAX_SDDL_SECURITY_DESCRIPTOR: &str = "MSWINDOWS.sd";
/// PAX record: present on a symlink entry that is a mount point (junction).
pub const PAX_MOUNT_POINT: &str = "MSWINDOWS.mountpoint";
/// PAX record prefix: `MSWINDOWS.xattr.<name>` = base64 of one EA value.
pub const PAX_EA_PREFIX: &str = "MSWINDOWS.xattr.";
/// PAX record: creation time (`secs[.frac]`).
pub const PAX_CREATION_TIME: &str = "LIBARCHIVE.creationtime";
/// PAX record: last write time (`secs[.frac]`).
pub const PAX_MTIME: &str = "mtime";
/// PAX record: last access time (`secs[.frac]`).
pub const PAX_ATIME: &str = "atime";
/// PAX record: change time (`secs[.frac]`).
pub const PAX_CTIME: &str = "ctime";
/// OCI whiteout prefix: an entry `dir/.wh.name` deletes `dir/name`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque-directory marker (image-spec layer.md "Opaque Whiteout").
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

// FILE_ATTRIBUTE_* bits the importer reasons about.
/// Win32 FILE_ATTRIBUTE_READONLY.
pub const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
/// Win32 FILE_ATTRIBUTE_DIRECTORY.
pub const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
/// Win32 FILE_ATTRIBUTE_ARCHIVE.
pub const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x20;
/// Win32 FILE_ATTRIBUTE_NORMAL: no other attribute set.
pub const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;
/// Win32 FILE_ATTRIBUTE_REPARSE_POINT.
pub const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;

/// A malformed value in a backuptar record or encoded structure.
#[derive(Debug, thiserror::Error)]
pub enum DialectError {
    /// A PAX time that is not `secs[.frac]`; the field holds the text.
    #[error("bad PAX time {}", quoted(.0))]
    BadTime(String),
    /// A time outside what a FILETIME can hold; the field holds it as PAX time text.
    #[error("time {} is outside the FILETIME range (1601-01-01 to 30828-09-14 UTC)", shorten(.0))]
    TimeOutOfRange(String),
    /// A bad time, with the record or header field it came from.
    #[error("{field}: {source}")]
    Time {
        /// `PAX record mtime`, `tar header mtime field`...
        field: String,
        /// What is wrong with the time.
        source: Box<DialectError>,
    },
    /// A PAX record whose value does not parse (e.g. a non-numeric `MSWINDOWS.fileattr`).
    #[error("bad {key} value {}", quoted(.value))]
    BadRecord {
        /// The record's key.
        key: &'static str,
        /// The value as found.
        value: String,
    },
    /// A record that should hold base64 does not.
    #[error("bad base64 in {}", shorten(.key))]
    BadBase64 {
        /// The record's key.
        key: String,
    },
    /// An EA whose name is over 255 bytes or value over 65535 bytes; the field is its name.
    #[error("extended attribute {} is too long (name <= 255 bytes, value <= 65535 bytes)", quoted(.0))]
    EaTooLong(String),
    /// An EA name that cannot be stored (empty, or holding a NUL).
    #[error("bad extended attribute name {}", quoted(.0))]
    BadEaName(String),
    /// Two EAs of one file whose names differ only in case.
    #[error(
        "extended attributes {} and {} differ only in case: NTFS EA names are case-insensitive, \
         so a file cannot have both",
        quoted(.first),
        quoted(.second)
    )]
    DuplicateEaName {
        /// One of the names.
        first: String,
        /// The other name.
        second: String,
    },
    /// A FILE_FULL_EA_INFORMATION chain that does not decode.
    #[error("bad EA buffer at offset {offset}: {reason}")]
    BadEaBuffer {
        /// Byte offset in the buffer of the record at fault.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A link target too long for a reparse buffer's 16-bit lengths; the field is the target.
    #[error("link target {} is too long for a reparse buffer", quoted(.0))]
    ReparseTooLong(String),
    /// A reparse buffer that does not decode; the field says why.
    #[error("bad reparse buffer: {0}")]
    BadReparseBuffer(String),
    /// A reparse tag the dialect has no tar form for (only symlinks and mount points have one).
    #[error("reparse tag {0:#010x} is neither a symlink nor a mount point")]
    UnsupportedReparseTag(u32),
    /// A legacy `MSWINDOWS.sd` SDDL string that does not convert.
    #[error(transparent)]
    Sddl(#[from] SddlError),
}

/// True when the attributes say directory.
pub(crate) fn is_directory(info: &FileMetadata) -> bool {
    info.attributes & FILE_ATTRIBUTE_DIRECTORY != 0
}

/// The tar-header facts `file_info_from_header` needs, independent of the tar library.
#[derive(Clone, Debug, Default)]
pub struct HeaderFacts {
    /// USTAR/GNU mtime field, whole seconds.
    pub mtime_secs: i64,
    /// GNU atime/ctime fields when the header has non-empty ones (Go reads them only then).
    pub gnu_atime_secs: Option<i64>,
    /// GNU ctime field, whole seconds, under the same condition as `gnu_atime_secs`.
    pub gnu_ctime_secs: Option<i64>,
    /// The entry is a directory.
    pub is_dir: bool,
    /// The entry is a symbolic link (or a junction, with `MSWINDOWS.mountpoint`).
    pub is_symlink: bool,
    /// Tar linkname (symlinks), `/` separators allowed.
    pub link_name: String,
    /// The header's size field, in bytes.
    pub size: u64,
}

fn base64_decode(key: &str, value: &str) -> Result<Vec<u8>, DialectError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim_end())
        .map_err(|_| DialectError::BadBase64 {
            key: key.to_string(),
        })
}

/// Base64 as backuptar writes it (standard alphabet, padded).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn time_record(
    pax: &BTreeMap<String, String>,
    key: &str,
    fallback: Option<i64>,
) -> Result<u64, DialectError> {
    let (field, result) = match (pax.get(key), fallback) {
        (Some(v), _) => (format!("PAX record {key}"), pax_time_to_filetime(v)),
        (None, Some(secs)) => (
            format!("tar header {key} field"),
            unix_secs_to_filetime(secs),
        ),
        (None, None) => return Ok(GO_ZERO_TIME_FILETIME),
    };
    result.map_err(|source| DialectError::Time {
        field,
        source: Box::new(source),
    })
}

/// Refuses two EAs whose names differ only in case: NTFS keeps EA names upper-cased and
/// compares them ignoring case, so Windows could never have written both.
fn refuse_names_equal_ignoring_case(eas: &[ExtendedAttribute]) -> Result<(), DialectError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for ea in eas {
        if let Some(first) = seen.insert(ea.name.to_uppercase(), &ea.name) {
            return Err(DialectError::DuplicateEaName {
                first: first.to_string(),
                second: ea.name.clone(),
            });
        }
    }
    Ok(())
}

/// Builds a file's Windows metadata from its tar header and PAX records (go-winio
/// `FileInfoFromHeader`, `SecurityDescriptorFromTarHeader`, `ExtendedAttributesFromTarHeader`,
/// `EncodeReparsePointFromTarHeader`). EAs are packed sorted by name so output is deterministic.
/// Directories always get FILE_ATTRIBUTE_DIRECTORY and regular files never do, whatever the
/// record says, so the CIM entry kind follows the tar type; a symlink keeps the record's bit, as
/// go-winio writes a junction or directory symlink as a symlink entry whose attributes say
/// directory (hcsshim passes it on, making a directory reparse point). The reparse bit is set
/// exactly when a reparse buffer is produced (hcsshim clears the tar's bit first).
pub fn file_info_from_header(
    h: &HeaderFacts,
    pax: &BTreeMap<String, String>,
) -> Result<FileMetadata, DialectError> {
    let mut attributes = match pax.get(PAX_FILE_ATTRIBUTES) {
        Some(v) => v.parse::<u32>().map_err(|_| DialectError::BadRecord {
            key: PAX_FILE_ATTRIBUTES,
            value: v.clone(),
        })?,
        None => 0,
    };
    if h.is_dir {
        attributes |= FILE_ATTRIBUTE_DIRECTORY;
    } else if !h.is_symlink {
        attributes &= !FILE_ATTRIBUTE_DIRECTORY;
    }
    attributes &= !FILE_ATTRIBUTE_REPARSE_POINT;

    let last_write_time = time_record(pax, PAX_MTIME, Some(h.mtime_secs))?;
    let last_access_time = time_record(pax, PAX_ATIME, h.gnu_atime_secs)?;
    let change_time = time_record(pax, PAX_CTIME, h.gnu_ctime_secs)?;
    let creation_time = match pax.get(PAX_CREATION_TIME) {
        Some(_) => time_record(pax, PAX_CREATION_TIME, None)?,
        None => last_write_time,
    };

    let security_descriptor = if let Some(v) = pax.get(PAX_RAW_SECURITY_DESCRIPTOR) {
        base64_decode(PAX_RAW_SECURITY_DESCRIPTOR, v)?
    } else if let Some(v) = pax.get(PAX_SDDL_SECURITY_DESCRIPTOR) {
        sddl_to_security_descriptor(v)?
    } else {
        Vec::new()
    };

    let mut eas = Vec::new();
    for (k, v) in pax.range(PAX_EA_PREFIX.to_string()..) {
        let Some(name) = k.strip_prefix(PAX_EA_PREFIX) else {
            break;
        };
        eas.push(ExtendedAttribute {
            name: name.to_string(),
            value: base64_decode(k, v)?,
            flags: 0,
        });
    }
    // BTreeMap iteration is already sorted by key, hence by EA name.
    refuse_names_equal_ignoring_case(&eas)?;
    let extended_attributes = encode_extended_attributes(&eas)?;

    let reparse_data = if h.is_symlink {
        let rp = ReparsePoint {
            target: h.link_name.replace('/', "\\"),
            is_mount_point: pax.contains_key(PAX_MOUNT_POINT),
        };
        encode_reparse_point(&rp)?
    } else {
        Vec::new()
    };
    if !reparse_data.is_empty() {
        attributes |= FILE_ATTRIBUTE_REPARSE_POINT;
    }
    Ok(FileMetadata {
        attributes,
        size: if h.is_dir || h.is_symlink { 0 } else { h.size },
        creation_time,
        last_write_time,
        change_time,
        last_access_time,
        security_descriptor,
        extended_attributes,
        reparse_data,
    })
}

/// The PAX records backuptar writes for a file (go-winio `BasicInfoHeader` and friends):
/// times, attributes, raw SD, EAs and the mount-point marker. The tar mtime header field is the
/// caller's (whole seconds of `last_write_time`).
pub fn pax_records_for(info: &FileMetadata) -> Result<BTreeMap<String, String>, DialectError> {
    let mut m = BTreeMap::new();
    m.insert(
        PAX_MTIME.to_string(),
        filetime_to_pax_time(info.last_write_time),
    );
    m.insert(
        PAX_ATIME.to_string(),
        filetime_to_pax_time(info.last_access_time),
    );
    m.insert(
        PAX_CTIME.to_string(),
        filetime_to_pax_time(info.change_time),
    );
    m.insert(
        PAX_CREATION_TIME.to_string(),
        filetime_to_pax_time(info.creation_time),
    );
    m.insert(PAX_FILE_ATTRIBUTES.to_string(), info.attributes.to_string());
    if !info.security_descriptor.is_empty() {
        m.insert(
            PAX_RAW_SECURITY_DESCRIPTOR.to_string(),
            base64_encode(&info.security_descriptor),
        );
    }
    for ea in decode_extended_attributes(&info.extended_attributes)? {
        m.insert(
            format!("{PAX_EA_PREFIX}{}", ea.name),
            base64_encode(&ea.value),
        );
    }
    if !info.reparse_data.is_empty() && decode_reparse_point(&info.reparse_data)?.is_mount_point {
        m.insert(PAX_MOUNT_POINT.to_string(), "1".to_string());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pax(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_to_file_info() {
        let h = HeaderFacts {
            mtime_secs: 1_600_000_000,
            size: 42,
            ..Default::default()
        };
        let p = pax(&[
            (PAX_FILE_ATTRIBUTES, "1056"), // ARCHIVE | REPARSE_POINT: the reparse bit is dropped
            ("mtime", "1600000000.5"),
            ("atime", "1600000001"),
            ("ctime", "-1.5"),
            (PAX_RAW_SECURITY_DESCRIPTOR, "AQAEgA=="),
            ("MSWINDOWS.xattr.b", "AQI="),
            ("MSWINDOWS.xattr.a", ""),
        ]);
        let fi = file_info_from_header(&h, &p).unwrap();
        assert_eq!(fi.attributes, 0x20);
        assert_eq!(fi.size, 42);
        assert_eq!(
            fi.last_write_time,
            UNIX_EPOCH_FILETIME + 16_000_000_005_000_000
        );
        assert_eq!(fi.creation_time, fi.last_write_time);
        assert_eq!(
            fi.last_access_time,
            UNIX_EPOCH_FILETIME + 16_000_000_010_000_000
        );
        assert_eq!(fi.change_time, UNIX_EPOCH_FILETIME - 15_000_000);
        assert_eq!(fi.security_descriptor, vec![1, 0, 4, 0x80]);
        let eas = decode_extended_attributes(&fi.extended_attributes).unwrap();
        assert_eq!(
            eas.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(eas[1].value, vec![1, 2]);
    }

    #[test]
    fn missing_times_follow_go() {
        let h = HeaderFacts {
            mtime_secs: 10,
            gnu_atime_secs: Some(20),
            ..Default::default()
        };
        let fi = file_info_from_header(&h, &BTreeMap::new()).unwrap();
        assert_eq!(fi.last_access_time, UNIX_EPOCH_FILETIME + 200_000_000);
        assert_eq!(fi.change_time, GO_ZERO_TIME_FILETIME);
        assert_eq!(fi.creation_time, UNIX_EPOCH_FILETIME + 100_000_000);
    }

    #[test]
    fn directories_and_symlinks() {
        let d = HeaderFacts {
            is_dir: true,
            size: 7,
            ..Default::default()
        };
        let fi = file_info_from_header(&d, &pax(&[(PAX_FILE_ATTRIBUTES, "0")])).unwrap();
        assert_eq!((fi.attributes, fi.size), (FILE_ATTRIBUTE_DIRECTORY, 0));
        let s = HeaderFacts {
            is_symlink: true,
            link_name: "C:/ProgramData".into(),
            ..Default::default()
        };
        let fi = file_info_from_header(
            &s,
            &pax(&[(PAX_MOUNT_POINT, "1"), (PAX_FILE_ATTRIBUTES, "16")]),
        )
        .unwrap();
        assert_eq!(
            fi.attributes,
            FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT
        );
        let rp = decode_reparse_point(&fi.reparse_data).unwrap();
        assert_eq!(
            rp,
            ReparsePoint {
                target: r"C:\ProgramData".into(),
                is_mount_point: true
            }
        );
    }

    #[test]
    fn sddl_record_used_only_without_rawsd() {
        let h = HeaderFacts::default();
        let fi =
            file_info_from_header(&h, &pax(&[(PAX_SDDL_SECURITY_DESCRIPTOR, "O:SY")])).unwrap();
        assert_eq!(
            fi.security_descriptor,
            sddl_to_security_descriptor("O:SY").unwrap()
        );
        let both = pax(&[
            (PAX_SDDL_SECURITY_DESCRIPTOR, "garbage"),
            (PAX_RAW_SECURITY_DESCRIPTOR, "AQA="),
        ]);
        assert_eq!(
            file_info_from_header(&h, &both)
                .unwrap()
                .security_descriptor,
            vec![1, 0]
        );
        assert!(
            file_info_from_header(&h, &pax(&[(PAX_SDDL_SECURITY_DESCRIPTOR, "O:QQ")])).is_err()
        );
    }

    #[test]
    fn bad_records_are_errors() {
        let h = HeaderFacts::default();
        for (k, v) in [
            (PAX_FILE_ATTRIBUTES, "x"),
            (PAX_FILE_ATTRIBUTES, "4294967296"),
            (PAX_RAW_SECURITY_DESCRIPTOR, "!!"),
            ("MSWINDOWS.xattr.a", "%%"),
            ("mtime", "soon"),
            (PAX_CREATION_TIME, "1.2.3"),
        ] {
            assert!(
                file_info_from_header(&h, &pax(&[(k, v)])).is_err(),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn pax_records_round_trip() {
        let info = FileMetadata {
            attributes: 0x20 | FILE_ATTRIBUTE_REPARSE_POINT,
            size: 0,
            creation_time: 132_000_000_001_234_567,
            last_write_time: 132_000_000_000_000_000,
            change_time: 131_000_000_000_000_000,
            last_access_time: 133_000_000_000_000_001,
            security_descriptor: sddl_to_security_descriptor("O:BAG:SYD:(A;;FA;;;SY)").unwrap(),
            extended_attributes: encode_extended_attributes(&[
                ExtendedAttribute {
                    name: "a".into(),
                    value: vec![1],
                    flags: 0,
                },
                ExtendedAttribute {
                    name: "b".into(),
                    value: vec![],
                    flags: 0,
                },
            ])
            .unwrap(),
            reparse_data: encode_reparse_point(&ReparsePoint {
                target: r"C:\x".into(),
                is_mount_point: true,
            })
            .unwrap(),
        };
        let recs = pax_records_for(&info).unwrap();
        let h = HeaderFacts {
            is_symlink: true,
            link_name: r"C:\x".into(),
            ..Default::default()
        };
        assert_eq!(file_info_from_header(&h, &recs).unwrap(), info);
    }
}
