//! The tar reader against a recording LayerWriter: every backuptar feature, in tar order.

mod common;

use std::io::{Cursor, Write};

use cimfs::FileMetadata;
use common::TarBuilder;
use wclayer::backuptar::{self, ReparsePoint, FILE_ATTRIBUTE_DIRECTORY};
use wclayer::{write_layer_from_tar, RecordedOp, RecordingLayerWriter};

fn record(tar: &[u8]) -> wclayer::Result<Vec<RecordedOp>> {
    let mut w = RecordingLayerWriter::new();
    let mut calls = 0;
    write_layer_from_tar(Cursor::new(tar), &mut w, &mut |_| calls += 1)?;
    Ok(w.ops)
}

fn sample_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.file(
        "Files/a.txt",
        &[
            ("MSWINDOWS.fileattr", "32".into()),
            ("MSWINDOWS.rawsd", "AQAEgBQAAAAAAAAAAAAAAAAAAAA=".into()),
            ("MSWINDOWS.xattr.user.b", "Ag==".into()),
            ("MSWINDOWS.xattr.user.a", "AQ==".into()),
            ("LIBARCHIVE.creationtime", "1500000000.25".into()),
            ("mtime", "1600000000.5".into()),
            ("atime", "1600000001".into()),
            ("ctime", "1600000002".into()),
        ],
        b"hello",
    );
    t.file("Files/a.txt:Zone.Identifier", &[], b"[ZoneTransfer]");
    t.file("Files/a.txt:second:$DATA", &[], b"2");
    t.entry(
        "Files/link.txt",
        tar::EntryType::Link,
        &[],
        "Files/a.txt",
        b"",
    );
    t.entry("Files/sym", tar::EntryType::Symlink, &[], "../x/y", b"");
    t.entry(
        "Files/junction",
        tar::EntryType::Symlink,
        &[("MSWINDOWS.mountpoint", "1".into())],
        "C:/ProgramData",
        b"",
    );
    t.entry("Files/fifo", tar::EntryType::Fifo, &[], "", b"");
    t.file("Files/.wh.gone.dll", &[], b"");
    t.file(".wh.TopLevel", &[], b"");
    t.file(
        "Files/sddl",
        &[("MSWINDOWS.sd", "O:BAG:SYD:(A;;FA;;;SY)".into())],
        b"",
    );
    t.finish()
}

#[test]
fn every_entry_kind_in_order() {
    let ops = record(&sample_tar()).unwrap();
    let names: Vec<String> = ops
        .iter()
        .map(|op| match op {
            RecordedOp::Add { name, .. } => format!("add {name}"),
            RecordedOp::AddLink { name, target } => format!("link {name} -> {target}"),
            RecordedOp::AddStream { name, size, .. } => format!("stream {name} {size}"),
            RecordedOp::Remove { name } => format!("remove {name}"),
            RecordedOp::Opaque { dir } => format!("opaque {dir}"),
            RecordedOp::Close => "close".into(),
        })
        .collect();
    assert_eq!(
        names,
        [
            r"add Files",
            r"add Files\a.txt",
            r"stream Files\a.txt:Zone.Identifier 14",
            r"stream Files\a.txt:second 1",
            r"link Files\link.txt -> Files\a.txt",
            r"add Files\sym",
            r"add Files\junction",
            r"add Files\fifo",
            r"remove Files\gone.dll",
            r"remove TopLevel",
            r"add Files\sddl",
        ]
    );
    let RecordedOp::Add { info, data, .. } = &ops[1] else {
        panic!("{:?}", ops[1])
    };
    assert_eq!(data, b"hello");
    let ft = |s: &str| backuptar::pax_time_to_filetime(s).unwrap();
    assert_eq!(
        info,
        &FileMetadata {
            attributes: 32,
            size: 5,
            creation_time: ft("1500000000.25"),
            last_write_time: ft("1600000000.5"),
            change_time: ft("1600000002"),
            last_access_time: ft("1600000001"),
            security_descriptor: backuptar::sddl_to_security_descriptor("D:NO_ACCESS_CONTROL")
                .map(|mut sd| {
                    sd[4] = 0x14; // the rawsd above has an owner offset of 0x14
                    sd
                })
                .unwrap(),
            extended_attributes: backuptar::encode_extended_attributes(&[
                backuptar::ExtendedAttribute {
                    name: "user.a".into(),
                    value: vec![1],
                    flags: 0
                },
                backuptar::ExtendedAttribute {
                    name: "user.b".into(),
                    value: vec![2],
                    flags: 0
                },
            ])
            .unwrap(),
            reparse_data: vec![],
        }
    );
    let RecordedOp::Add { info, .. } = &ops[0] else {
        panic!()
    };
    assert_eq!(info.attributes, FILE_ATTRIBUTE_DIRECTORY);
    let RecordedOp::Add { info, .. } = &ops[5] else {
        panic!()
    };
    assert_eq!(
        backuptar::decode_reparse_point(&info.reparse_data).unwrap(),
        ReparsePoint {
            target: r"..\x\y".into(),
            is_mount_point: false
        }
    );
    assert_eq!(
        info.attributes & backuptar::FILE_ATTRIBUTE_REPARSE_POINT,
        backuptar::FILE_ATTRIBUTE_REPARSE_POINT
    );
    let RecordedOp::Add { info, .. } = &ops[6] else {
        panic!()
    };
    assert!(
        backuptar::decode_reparse_point(&info.reparse_data)
            .unwrap()
            .is_mount_point
    );
    let RecordedOp::Add { info, .. } = &ops[10] else {
        panic!()
    };
    assert_eq!(
        info.security_descriptor,
        backuptar::sddl_to_security_descriptor("O:BAG:SYD:(A;;FA;;;SY)").unwrap()
    );
}

#[test]
fn compression_is_detected_from_bytes() {
    let plain = sample_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(Cursor::new(&plain), 3).unwrap();
    let want = record(&plain).unwrap();
    for input in [gz, zst] {
        let mut w = RecordingLayerWriter::new();
        let r = wclayer::decompressed(Cursor::new(input)).unwrap();
        write_layer_from_tar(r, &mut w, &mut |_| {}).unwrap();
        assert_eq!(w.ops, want);
    }
    assert!(wclayer::decompressed(Cursor::new(b"\xfd7zXZ\0rest".to_vec())).is_err());
}

#[test]
fn hostile_names_are_refused() {
    for (name, kind, link) in [
        ("../evil", tar::EntryType::Regular, ""),
        ("Files/../../evil", tar::EntryType::Regular, ""),
        ("/etc/passwd", tar::EntryType::Regular, ""),
        ("C:/Windows/x", tar::EntryType::Regular, ""),
        ("Files/l", tar::EntryType::Link, "../../etc/passwd"),
        ("Files/l", tar::EntryType::Link, "/etc/passwd"),
        ("./.wh..wh..opq", tar::EntryType::Regular, ""),
        ("Files/.wh..wh.aufs", tar::EntryType::Regular, ""),
        ("Files/../.wh..wh..opq", tar::EntryType::Regular, ""),
        ("Files/x:s:$EA", tar::EntryType::Regular, ""),
    ] {
        let mut t = TarBuilder::new();
        t.dir("Files", &[]);
        t.entry(name, kind, &[], link, b"");
        let err = record(&t.finish()).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn opaque_whiteout_becomes_an_opaque_call_in_tar_order() {
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.dir("Files/D", &[]);
    t.file("Files/D/c", &[], b"c");
    t.file("Files/D/.wh..wh..opq", &[], b"");
    t.file("Files/D/d", &[], b"dd");
    // a marker for a directory this tar never mentions is passed on all the same
    t.entry(
        "./Files/E/F/.wh..wh..opq",
        tar::EntryType::Regular,
        &[],
        "",
        b"",
    );
    let mut w = RecordingLayerWriter::new();
    let stats = write_layer_from_tar(Cursor::new(t.finish()), &mut w, &mut |_| {}).unwrap();
    assert_eq!(stats.entries, 6);
    assert_eq!(stats.size, 3);
    let short: Vec<String> = w
        .ops
        .iter()
        .map(|op| match op {
            RecordedOp::Add { name, .. } => format!("add {name}"),
            RecordedOp::Opaque { dir } => format!("opaque {dir}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        short,
        [
            r"add Files",
            r"add Files\D",
            r"add Files\D\c",
            r"opaque Files\D",
            r"add Files\D\d",
            r"opaque Files\E\F",
        ]
    );
    // a stream cannot follow the marker as if it were a file
    let mut t = TarBuilder::new();
    t.dir("D", &[]);
    t.file("D/.wh..wh..opq", &[], b"");
    t.file("D/.wh..wh..opq:s", &[], b"x");
    assert!(record(&t.finish()).is_err());
}

#[test]
fn stream_must_follow_its_file() {
    let mut t = TarBuilder::new();
    t.file("aa", &[], b"1");
    t.file("b", &[], b"2");
    t.file("aa:s", &[], b"3");
    let err = record(&t.finish()).unwrap_err().to_string();
    assert!(err.contains("does not follow"), "{err}");
}

#[test]
fn bad_sddl_names_the_entry_and_token() {
    let mut t = TarBuilder::new();
    t.file(
        "Files/x",
        &[("MSWINDOWS.sd", "O:BAD:(A;;ZZ;;;SY)".into())],
        b"",
    );
    let err = record(&t.finish()).unwrap_err().to_string();
    assert!(err.contains("Files/x") && err.contains("ZZ"), "{err}");
}

#[test]
fn truncated_tar_is_an_error() {
    let tar = sample_tar();
    // cut inside the data of Files/a.txt
    let pos = tar.windows(5).position(|w| w == b"hello").unwrap();
    assert!(record(&tar[..pos + 2]).is_err());
}

#[test]
fn progress_counts_entries_and_bytes() {
    let tar = sample_tar();
    let mut seen = Vec::new();
    let mut w = RecordingLayerWriter::new();
    let stats = write_layer_from_tar(Cursor::new(&tar), &mut w, &mut |p| seen.push(p)).unwrap();
    assert_eq!(stats.entries, 11);
    assert_eq!(stats.size, 5);
    assert_eq!(seen.len(), 11);
    assert!(seen.windows(2).all(|w| w[0].bytes_read <= w[1].bytes_read));
    assert!(seen.last().unwrap().bytes_read <= tar.len() as u64);
}

/// Pre-POSIX tars mark files with a `'\0'` typeflag; Go's archive/tar (what hcsshim reads
/// layers with) makes such an entry a directory when its name ends in `/` (layer-tar.md §B1).
#[test]
fn legacy_nul_typeflag_is_a_directory_when_the_name_ends_in_a_slash() {
    let mut t = TarBuilder::new();
    t.entry_with_typeflag("./", 0, &[], "", b"");
    t.entry_with_typeflag("Files/", 0, &[], "", b"");
    t.entry_with_typeflag("Files/sub/", 0, &[], "", b"");
    t.entry_with_typeflag("Files/sub/a", 0, &[], "", b"data");
    let ops = record(&t.finish()).unwrap();
    let added: Vec<(String, bool, u64)> = ops
        .iter()
        .filter_map(|op| match op {
            RecordedOp::Add { name, info, .. } => Some((
                name.clone(),
                info.attributes & FILE_ATTRIBUTE_DIRECTORY != 0,
                info.size,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        [
            ("Files".to_string(), true, 0),
            (r"Files\sub".to_string(), true, 0),
            (r"Files\sub\a".to_string(), false, 4),
        ]
    );
}
