//! Fuzz target: the backuptar dialect. The first byte picks what the rest of the input is:
//!   0 SDDL text          1 binary security descriptor   2 EA buffer      3 reparse buffer
//!   4 PAX time / FILETIME 5 SID (text, then binary)       6 PAX records    7 a layer tar stream
//! Every decoder must return a typed error or a value that encodes and decodes back to itself;
//! a layer tar (plain, gzip or zstd) is read into a RecordingLayerWriter, and the metadata of
//! every entry it adds must turn back into PAX records (what export writes).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use wclayer::backuptar::*;

fn sddl(text: &str) {
    if let Ok(bin) = sddl_to_security_descriptor(text) {
        let back = security_descriptor_to_sddl(&bin).expect("our own descriptor formats");
        assert_eq!(
            sddl_to_security_descriptor(&back).expect("formatted SDDL parses"),
            bin,
            "{text:?} -> {back:?}"
        );
    }
}

fn binary_sd(bytes: &[u8]) {
    if let Ok(text) = security_descriptor_to_sddl(bytes) {
        // What we format must parse, and format again to the same text.
        let bin = sddl_to_security_descriptor(&text).expect("formatted SDDL parses");
        assert_eq!(security_descriptor_to_sddl(&bin).expect("formats"), text);
    }
}

fn eas(bytes: &[u8]) {
    if let Ok(list) = decode_extended_attributes(bytes) {
        if let Ok(enc) = encode_extended_attributes(&list) {
            assert_eq!(
                decode_extended_attributes(&enc).expect("own EA buffer"),
                list
            );
        }
    }
}

fn reparse(bytes: &[u8]) {
    if let Ok(rp) = decode_reparse_point(bytes) {
        if let Ok(enc) = encode_reparse_point(&rp) {
            assert_eq!(decode_reparse_point(&enc).expect("own reparse buffer"), rp);
        }
    }
}

fn times(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(ft) = pax_time_to_filetime(&text) {
        assert_eq!(
            pax_time_to_filetime(&filetime_to_pax_time(ft)).ok(),
            Some(ft)
        );
    }
    if let Some(b) = bytes.get(..8) {
        let ft = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let pax = filetime_to_pax_time(ft);
        assert_eq!(pax_time_to_filetime(&pax).ok(), Some(ft), "{pax}");
        let _ = format_pax_time(filetime_to_unix(ft));
    }
}

fn sids(bytes: &[u8]) {
    if let Ok(bin) = sid_from_string(&String::from_utf8_lossy(bytes)) {
        let text = sid_to_string(&bin).expect("own SID formats");
        assert_eq!(sid_from_string(&text).ok(), Some(bin));
    }
    if let Some(text) = sid_to_string(bytes) {
        let count = usize::from(bytes[1]);
        if count <= 15 {
            assert_eq!(
                sid_from_string(&text).ok().as_deref(),
                Some(&bytes[..8 + 4 * count])
            );
        }
    }
}

/// Header facts from the first 10 bytes, then `key=value` lines (`linkname=` sets the link).
fn pax_records(bytes: &[u8]) {
    if bytes.len() < 10 {
        return;
    }
    let flags = bytes[0];
    let mtime = i64::from(i32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
    let size = u64::from(u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]));
    let mut pax = BTreeMap::new();
    for line in String::from_utf8_lossy(&bytes[10..]).split('\n') {
        if let Some((k, v)) = line.split_once('=') {
            pax.insert(k.to_string(), v.to_string());
        }
    }
    let link_name = pax.remove("linkname").unwrap_or_default();
    let h = HeaderFacts {
        mtime_secs: mtime,
        gnu_atime_secs: (flags & 4 != 0).then_some(mtime / 3),
        gnu_ctime_secs: (flags & 8 != 0).then_some(-mtime),
        is_dir: flags & 1 != 0,
        is_symlink: flags & 1 == 0 && flags & 2 != 0,
        link_name,
        size,
    };
    let Ok(info) = file_info_from_header(&h, &pax) else {
        return;
    };
    let records = pax_records_for(&info).expect("imported metadata exports");
    let again = file_info_from_header(&h, &records).expect("exported records import");
    assert_eq!(again, info);
}

fn layer_tar(bytes: &[u8]) {
    let Ok(input) = wclayer::decompressed(bytes) else {
        return;
    };
    let mut w = wclayer::RecordingLayerWriter::new();
    let _ = wclayer::write_layer_from_tar(input, &mut w, &mut |_| {});
    for op in &w.ops {
        if let wclayer::RecordedOp::Add { info, .. } = op {
            pax_records_for(info).expect("imported metadata exports");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 8 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                sddl(text);
            }
        }
        1 => binary_sd(rest),
        2 => eas(rest),
        3 => reparse(rest),
        4 => times(rest),
        5 => sids(rest),
        6 => pax_records(rest),
        _ => layer_tar(rest),
    }
});
