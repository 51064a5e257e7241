//! Symbolic links and mount points (junctions) as REPARSE_DATA_BUFFERs, encoded from a tar link
//! target and decoded back to one (go-winio `reparse.go`; layer-tar.md §B8).

use super::DialectError;

/// IO_REPARSE_TAG_SYMLINK.
pub const IO_REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;
/// IO_REPARSE_TAG_MOUNT_POINT.
pub const IO_REPARSE_TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// SYMLINK_FLAG_RELATIVE.
pub const SYMLINK_FLAG_RELATIVE: u32 = 1;

/// A link target as a tar header carries it, with Windows separators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReparsePoint {
    /// The link target (the buffer's print name), `\`-separated.
    pub target: String,
    /// A mount point (junction) rather than a symbolic link.
    pub is_mount_point: bool,
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Builds the NT ("substitute") name and whether the target is relative.
fn nt_name(target: &str) -> (String, bool) {
    let b = target.as_bytes();
    if let Some(rest) = target.strip_prefix(r"\\?\") {
        (format!(r"\??\{rest}"), false)
    } else if let Some(rest) = target.strip_prefix(r"\\") {
        (format!(r"\??\UNC\{rest}"), false)
    } else if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        (format!(r"\??\{target}"), false)
    } else {
        (target.to_string(), true)
    }
}

/// Encodes a complete REPARSE_DATA_BUFFER for a symlink or mount point. `target` uses `\`
/// (callers convert a tar linkname's `/` first).
pub fn encode_reparse_point(rp: &ReparsePoint) -> Result<Vec<u8>, DialectError> {
    let (nt, relative) = nt_name(&rp.target);
    let sub = utf16z(&nt);
    let print = utf16z(&rp.target);
    let too_long = || DialectError::ReparseTooLong(rp.target.clone());
    let sub_len = u16::try_from(sub.len() - 2).map_err(|_| too_long())?;
    let sub_len_z = u16::try_from(sub.len()).map_err(|_| too_long())?;
    let print_len = u16::try_from(print.len() - 2).map_err(|_| too_long())?;
    let (tag, flags_len) = if rp.is_mount_point {
        (IO_REPARSE_TAG_MOUNT_POINT, 0)
    } else {
        (IO_REPARSE_TAG_SYMLINK, 4)
    };
    let data_len =
        u16::try_from(8 + flags_len + sub.len() + print.len()).map_err(|_| too_long())?;
    let mut out = Vec::with_capacity(8 + usize::from(data_len));
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // SubstituteNameOffset
    out.extend_from_slice(&sub_len.to_le_bytes());
    out.extend_from_slice(&sub_len_z.to_le_bytes()); // PrintNameOffset
    out.extend_from_slice(&print_len.to_le_bytes());
    if !rp.is_mount_point {
        let flags = if relative { SYMLINK_FLAG_RELATIVE } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
    }
    out.extend_from_slice(&sub);
    out.extend_from_slice(&print);
    Ok(out)
}

/// Decodes a symlink or mount-point REPARSE_DATA_BUFFER to its print name; any other tag is an
/// error (export cannot represent it).
pub fn decode_reparse_point(buf: &[u8]) -> Result<ReparsePoint, DialectError> {
    let bad = |why: &str| DialectError::BadReparseBuffer(why.to_string());
    let u16_at = |off: usize| -> Result<usize, DialectError> {
        buf.get(off..off + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or_else(|| bad("buffer is truncated"))
    };
    let tag_bytes = buf.get(0..4).ok_or_else(|| bad("buffer is truncated"))?;
    let tag = u32::from_le_bytes([tag_bytes[0], tag_bytes[1], tag_bytes[2], tag_bytes[3]]);
    let is_mount_point = match tag {
        IO_REPARSE_TAG_SYMLINK => false,
        IO_REPARSE_TAG_MOUNT_POINT => true,
        other => return Err(DialectError::UnsupportedReparseTag(other)),
    };
    let data_len = u16_at(4)?;
    let data = buf
        .get(8..8 + data_len)
        .ok_or_else(|| bad("ReparseDataLength runs past the buffer"))?;
    let print_off = u16_at(12)?;
    let print_len = u16_at(14)?;
    let path_buffer = if is_mount_point { 8 } else { 12 };
    if print_len % 2 != 0 {
        return Err(bad("odd print name length"));
    }
    let start = path_buffer + print_off;
    let name = data
        .get(start..start + print_len)
        .ok_or_else(|| bad("print name runs past the reparse data"))?;
    let units: Vec<u16> = name
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let target = String::from_utf16(&units).map_err(|_| bad("print name is not valid UTF-16"))?;
    Ok(ReparsePoint {
        target,
        is_mount_point,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(target: &str, is_mount_point: bool) -> ReparsePoint {
        ReparsePoint {
            target: target.into(),
            is_mount_point,
        }
    }

    #[test]
    fn relative_symlink_bytes() {
        let buf = encode_reparse_point(&rp(r"a\b", false)).unwrap();
        // names "a\b" (3 units): substitute 6+2 bytes, print 6+2 bytes
        let mut want = vec![
            0x0C, 0, 0, 0xA0, 28, 0, 0, 0, 0, 0, 6, 0, 8, 0, 6, 0, 1, 0, 0, 0,
        ];
        let name = [b'a', 0, b'\\', 0, b'b', 0, 0, 0];
        want.extend_from_slice(&name);
        want.extend_from_slice(&name);
        assert_eq!(buf, want);
        assert_eq!(buf.len(), 8 + 28);
    }

    #[test]
    fn absolute_names_get_nt_prefixes() {
        for (target, nt) in [
            (r"C:\Windows", r"\??\C:\Windows"),
            (r"\\?\Volume{x}\dir", r"\??\Volume{x}\dir"),
            (r"\\server\share", r"\??\UNC\server\share"),
        ] {
            let buf = encode_reparse_point(&rp(target, false)).unwrap();
            let flags = u32::from_le_bytes(buf[16..20].try_into().unwrap());
            assert_eq!(flags, 0, "{target}");
            let sub_len = usize::from(u16::from_le_bytes([buf[10], buf[11]]));
            let units: Vec<u16> = buf[20..20 + sub_len]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            assert_eq!(String::from_utf16(&units).unwrap(), nt);
        }
    }

    #[test]
    fn round_trip_symlinks_and_mount_points() {
        for p in [
            rp(r"..\x\y.dll", false),
            rp(r"C:\ProgramData", true),
            rp(r"\\?\Volume{01234567-89ab-cdef-0123-456789abcdef}\", true),
            rp("ünïcode\\名前", false),
        ] {
            let buf = encode_reparse_point(&p).unwrap();
            assert_eq!(decode_reparse_point(&buf).unwrap(), p);
            assert_eq!(
                buf[0..4],
                if p.is_mount_point {
                    [3, 0, 0, 0xA0]
                } else {
                    [0xC, 0, 0, 0xA0]
                }
            );
        }
    }

    #[test]
    fn rejects_other_tags_and_truncation() {
        let mut buf = encode_reparse_point(&rp("x", false)).unwrap();
        assert!(decode_reparse_point(&buf[..buf.len() - 1]).is_err());
        assert!(decode_reparse_point(&buf[..6]).is_err());
        buf[0] = 0x17; // IO_REPARSE_TAG_WCI-ish, not a link
        assert!(matches!(
            decode_reparse_point(&buf),
            Err(DialectError::UnsupportedReparseTag(_))
        ));
        assert!(encode_reparse_point(&rp(&"x".repeat(20000), false)).is_err());
    }
}
