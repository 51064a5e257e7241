//! Structural checks of the opaque Windows blobs a file carries (self-relative security
//! descriptor, FILE_FULL_EA_INFORMATION chain): the writer refuses malformed ones so it never
//! stores something Windows could not parse. Returns why a blob is malformed.

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// SE_SELF_RELATIVE in SECURITY_DESCRIPTOR.Control.
const SE_SELF_RELATIVE: u16 = 0x8000;

/// Checks a SECURITY_DESCRIPTOR_RELATIVE: revision 1, the self-relative bit, and every owner,
/// group, SACL and DACL offset either 0 or pointing at a SID / ACL that fits in the buffer, each
/// ACL with a known revision and an ACE list that fits in it.
pub(crate) fn check_security_descriptor(sd: &[u8]) -> Result<(), String> {
    if sd.len() < 20 {
        return Err(format!(
            "security descriptor is {} bytes, shorter than its 20-byte header",
            sd.len()
        ));
    }
    if sd[0] != 1 {
        return Err(format!(
            "security descriptor revision {} (expected 1)",
            sd[0]
        ));
    }
    let control = u16_at(sd, 2).unwrap_or(0);
    if control & SE_SELF_RELATIVE == 0 {
        return Err("security descriptor is not self-relative (SE_SELF_RELATIVE clear)".into());
    }
    for (what, at, is_sid) in [
        ("owner", 4, true),
        ("group", 8, true),
        ("SACL", 12, false),
        ("DACL", 16, false),
    ] {
        let off = u32_at(sd, at).unwrap_or(0) as usize;
        if off == 0 {
            continue;
        }
        if off < 20 || off >= sd.len() {
            return Err(format!(
                "security descriptor {what} offset {off} is outside 20..{}",
                sd.len()
            ));
        }
        let end = if is_sid {
            // SID: revision 1, sub-authority count ≤ 15, 8 + 4 × count bytes.
            let count = usize::from(sd.get(off + 1).copied().unwrap_or(0xff));
            if sd[off] != 1 || count > 15 {
                return Err(format!(
                    "security descriptor {what} SID at {off} is malformed"
                ));
            }
            off + 8 + 4 * count
        } else {
            // ACL header: revision, Sbz1, AclSize (u16), AceCount (u16), Sbz2.
            let size = usize::from(u16_at(sd, off + 2).unwrap_or(0));
            if size < 8 {
                return Err(format!(
                    "security descriptor {what} at {off} has size {size}"
                ));
            }
            off + size
        };
        if end > sd.len() {
            return Err(format!(
                "security descriptor {what} at {off} runs past the end ({} bytes)",
                sd.len()
            ));
        }
        if !is_sid {
            check_acl(&sd[off..end])
                .map_err(|why| format!("security descriptor {what} at {off}: {why}"))?;
        }
    }
    Ok(())
}

/// Checks an ACL (exactly AclSize bytes): revision 2 to 4 (ACL_REVISION..ACL_REVISION_DS) and
/// AceCount ACEs whose headers and AceSize each stay inside the ACL.
fn check_acl(acl: &[u8]) -> Result<(), String> {
    let revision = acl[0];
    if !(2..=4).contains(&revision) {
        return Err(format!("ACL revision {revision} (expected 2 to 4)"));
    }
    let count = u16_at(acl, 4).unwrap_or(0);
    let mut at = 8usize;
    for i in 0..count {
        let size = u16_at(acl, at + 2)
            .map(usize::from)
            .ok_or_else(|| format!("ACE {i} of {count} starts past the ACL's end"))?;
        if size < 4 || at + size > acl.len() {
            return Err(format!(
                "ACE {i} at {at} has size {size}, outside the {}-byte ACL",
                acl.len()
            ));
        }
        at += size;
    }
    Ok(())
}

/// Checks a FILE_FULL_EA_INFORMATION chain: every entry (NextEntryOffset, Flags, EaNameLength,
/// EaValueLength, NUL-terminated name, value) fits, offsets move forward past the entry, and
/// the last entry has NextEntryOffset 0.
pub(crate) fn check_ea_chain(ea: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    loop {
        let next = u32_at(ea, at)
            .ok_or_else(|| format!("EA entry at {at} is shorter than its 8-byte header"))?
            as usize;
        let name_len = usize::from(
            *ea.get(at + 5)
                .ok_or_else(|| format!("EA entry at {at} is truncated"))?,
        );
        let value_len = usize::from(
            u16_at(ea, at + 6).ok_or_else(|| format!("EA entry at {at} is truncated"))?,
        );
        if name_len == 0 || name_len > 0xfe {
            return Err(format!("EA entry at {at} has name length {name_len}"));
        }
        let size = 8 + name_len + 1 + value_len;
        if at + size > ea.len() {
            return Err(format!(
                "EA entry at {at} ({size} bytes) runs past the buffer ({} bytes)",
                ea.len()
            ));
        }
        if ea[at + 8 + name_len] != 0 {
            return Err(format!("EA entry at {at}: name is not NUL-terminated"));
        }
        if next == 0 {
            return Ok(());
        }
        if next < size || next & 3 != 0 || at + next >= ea.len() {
            return Err(format!(
                "EA entry at {at} has NextEntryOffset {next} (entry is {size} bytes, buffer {})",
                ea.len()
            ));
        }
        at += next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_null_dacl_sd_and_rejects_short_or_absolute_ones() {
        assert!(check_security_descriptor(&crate::format::NULL_DACL_SD).is_ok());
        assert!(check_security_descriptor(&[1, 0, 4]).is_err());
        let mut abs = crate::format::NULL_DACL_SD;
        abs[3] = 0;
        assert!(check_security_descriptor(&abs).is_err());
        let mut bad_owner = crate::format::NULL_DACL_SD.to_vec();
        bad_owner[4] = 200;
        assert!(check_security_descriptor(&bad_owner).is_err());
    }

    #[test]
    fn walks_the_aces_of_an_acl() {
        // DACL at 20: revision 2, AclSize 28, one ACCESS_ALLOWED ACE of 20 bytes (S-1-5-18).
        let mut sd = vec![
            1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0,
        ];
        sd.extend_from_slice(&[2, 0, 28, 0, 1, 0, 0, 0]);
        sd.extend_from_slice(&[0, 0, 20, 0, 0xff, 1, 0x1f, 0]);
        sd.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]);
        assert!(check_security_descriptor(&sd).is_ok());
        for (at, v, why) in [
            (20, 9, "ACL revision 9"),
            (24, 2, "ACE 1 of 2 starts past"),
            (30, 21, "ACE 0 at 8 has size 21"),
            (30, 2, "ACE 0 at 8 has size 2"),
        ] {
            let mut bad = sd.clone();
            bad[at] = v;
            let e = check_security_descriptor(&bad).unwrap_err();
            assert!(e.contains("DACL at 20") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn checks_ea_chains() {
        let one = [0, 0, 0, 0, 0, 2, 1, 0, b'A', b'B', 0, 7];
        assert!(check_ea_chain(&one).is_ok());
        let mut next_past = one;
        next_past[0] = 200;
        assert!(check_ea_chain(&next_past).is_err());
        let mut two = vec![12, 0, 0, 0, 0, 1, 1, 0, b'A', 0, 1, 0];
        two.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, b'B', 0]);
        assert!(check_ea_chain(&two).is_ok());
        assert!(check_ea_chain(&two[..15]).is_err());
    }
}
