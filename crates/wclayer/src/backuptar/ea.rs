//! Extended attributes: the packed FILE_FULL_EA_INFORMATION chain a CIM stores, built from and
//! split back into the tar's `MSWINDOWS.xattr.<name>` records (go-winio `ea.go`; layer-tar.md §B7).

use super::DialectError;

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedAttribute {
    /// The EA's name (the `<name>` of its `MSWINDOWS.xattr.<name>` record).
    pub name: String,
    /// The EA's value bytes.
    pub value: Vec<u8>,
    /// The record's flags byte (always 0 for EAs read from a tar: tars do not carry it).
    pub flags: u8,
}

const HEADER_LEN: usize = 8;

/// Packs EAs into a FILE_FULL_EA_INFORMATION chain, in the order given. Every record,
/// including the last (whose NextEntryOffset is 0), is padded to a multiple of 4 bytes.
pub fn encode_extended_attributes(eas: &[ExtendedAttribute]) -> Result<Vec<u8>, DialectError> {
    let mut out = Vec::new();
    for (i, ea) in eas.iter().enumerate() {
        let name = ea.name.as_bytes();
        let name_len =
            u8::try_from(name.len()).map_err(|_| DialectError::EaTooLong(ea.name.clone()))?;
        let value_len =
            u16::try_from(ea.value.len()).map_err(|_| DialectError::EaTooLong(ea.name.clone()))?;
        if name.contains(&0) || name.is_empty() {
            return Err(DialectError::BadEaName(ea.name.clone()));
        }
        let size = HEADER_LEN + name.len() + 1 + ea.value.len();
        let padded = (size + 3) & !3;
        let next = if i + 1 == eas.len() { 0 } else { padded as u32 };
        out.extend_from_slice(&next.to_le_bytes());
        out.push(ea.flags);
        out.push(name_len);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(&ea.value);
        out.resize(out.len() + (padded - size), 0);
    }
    Ok(out)
}

/// Splits a FILE_FULL_EA_INFORMATION chain into its records, checking every length against the
/// buffer.
pub fn decode_extended_attributes(buf: &[u8]) -> Result<Vec<ExtendedAttribute>, DialectError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rec = &buf[pos..];
        let bad = |why: &str| DialectError::BadEaBuffer {
            offset: pos,
            reason: why.to_string(),
        };
        if rec.len() < HEADER_LEN {
            return Err(bad("record header is truncated"));
        }
        let next = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
        let flags = rec[4];
        let name_len = usize::from(rec[5]);
        let value_len = usize::from(u16::from_le_bytes([rec[6], rec[7]]));
        let end = HEADER_LEN + name_len + 1 + value_len;
        if end > rec.len() {
            return Err(bad("name or value runs past the buffer"));
        }
        if rec[HEADER_LEN + name_len] != 0 {
            return Err(bad("name is not NUL-terminated"));
        }
        let name = std::str::from_utf8(&rec[HEADER_LEN..HEADER_LEN + name_len])
            .map_err(|_| bad("name is not UTF-8"))?;
        let value = rec[HEADER_LEN + name_len + 1..end].to_vec();
        out.push(ExtendedAttribute {
            name: name.to_string(),
            value,
            flags,
        });
        if next == 0 {
            break;
        }
        if next < end || next > rec.len() {
            return Err(bad("NextEntryOffset points outside the buffer"));
        }
        pos += next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ea(name: &str, value: &[u8]) -> ExtendedAttribute {
        ExtendedAttribute {
            name: name.into(),
            value: value.to_vec(),
            flags: 0,
        }
    }

    #[test]
    fn packs_records_with_padding_including_the_last() {
        let buf = encode_extended_attributes(&[ea("A", b"xy"), ea("BC", b"")]).unwrap();
        // record 1: 8 + 1 + 1 + 2 = 12 (already aligned); record 2: 8 + 2 + 1 = 11 -> 12
        let expected: Vec<u8> = [
            &[12, 0, 0, 0, 0, 1, 2, 0][..],
            b"A\0xy",
            &[0, 0, 0, 0, 0, 2, 0, 0],
            b"BC\0\0",
        ]
        .concat();
        assert_eq!(buf, expected);
        assert_eq!(
            decode_extended_attributes(&buf).unwrap(),
            vec![ea("A", b"xy"), ea("BC", b"")]
        );
    }

    #[test]
    fn round_trips_and_keeps_flags() {
        let mut eas = vec![
            ea("$KERNEL.PURGE.ESBCACHE", &[1, 2, 3, 4, 5]),
            ea("user.x", &[9; 300]),
        ];
        eas[1].flags = 0x80;
        let buf = encode_extended_attributes(&eas).unwrap();
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(decode_extended_attributes(&buf).unwrap(), eas);
    }

    #[test]
    fn rejects_oversized_and_corrupt_input() {
        assert!(encode_extended_attributes(&[ea(&"n".repeat(256), b"")]).is_err());
        assert!(encode_extended_attributes(&[ea("n", &vec![0; 65536])]).is_err());
        assert!(encode_extended_attributes(&[ea("", b"v")]).is_err());
        let good = encode_extended_attributes(&[ea("A", b"xy"), ea("B", b"z")]).unwrap();
        assert!(decode_extended_attributes(&good[..5]).is_err());
        let mut long_value = good.clone();
        long_value[6] = 200;
        assert!(decode_extended_attributes(&long_value).is_err());
        let mut bad_next = good.clone();
        bad_next[0] = 250;
        assert!(decode_extended_attributes(&bad_next).is_err());
        let mut no_nul = good;
        no_nul[9] = b'!';
        assert!(decode_extended_attributes(&no_nul).is_err());
    }

    #[test]
    fn empty_buffer_is_no_attributes() {
        assert!(encode_extended_attributes(&[]).unwrap().is_empty());
        assert!(decode_extended_attributes(&[]).unwrap().is_empty());
    }
}
