//! SDDL strings (the legacy `MSWINDOWS.sd` record) converted to binary self-relative security
//! descriptors, as ConvertStringSecurityDescriptorToSecurityDescriptorW would for a file.
//! Grammar and constants: [MS-DTYP] §2.4.4 (ACEs), §2.4.5 (ACL), §2.4.6 (SD), §2.5.1 (SDDL).

use std::fmt;

/// Why an SDDL string could not be converted: the byte offset in the string and the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SddlError {
    /// Byte offset in the SDDL string where the problem starts.
    pub offset: usize,
    /// The token at that offset.
    pub token: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for SddlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SDDL: {} at offset {}: {:?}",
            self.reason, self.offset, self.token
        )
    }
}

impl std::error::Error for SddlError {}

/// SECURITY_DESCRIPTOR_CONTROL bits ([MS-DTYP] 2.4.6).
pub mod control {
    /// The descriptor has a DACL (SDDL `D:`).
    pub const SE_DACL_PRESENT: u16 = 0x0004;
    /// The descriptor has a SACL (SDDL `S:`).
    pub const SE_SACL_PRESENT: u16 = 0x0010;
    /// DACL flag `AR`: inheritance to children is requested.
    pub const SE_DACL_AUTO_INHERIT_REQ: u16 = 0x0100;
    /// SACL flag `AR`: inheritance to children is requested.
    pub const SE_SACL_AUTO_INHERIT_REQ: u16 = 0x0200;
    /// DACL flag `AI`: the DACL was set up with automatic inheritance.
    pub const SE_DACL_AUTO_INHERITED: u16 = 0x0400;
    /// SACL flag `AI`: the SACL was set up with automatic inheritance.
    pub const SE_SACL_AUTO_INHERITED: u16 = 0x0800;
    /// DACL flag `P`: the DACL does not inherit from the parent.
    pub const SE_DACL_PROTECTED: u16 = 0x1000;
    /// SACL flag `P`: the SACL does not inherit from the parent.
    pub const SE_SACL_PROTECTED: u16 = 0x2000;
    /// The descriptor is self-relative: its parts follow it as offsets, not pointers.
    pub const SE_SELF_RELATIVE: u16 = 0x8000;
}

const ACL_REVISION: u8 = 2;
const ACL_REVISION_DS: u8 = 4;
const ACE_OBJECT_TYPE_PRESENT: u32 = 1;
const ACE_INHERITED_OBJECT_TYPE_PRESENT: u32 = 2;

/// Well-known SID aliases that need no domain ([MS-DTYP] 2.5.1.1 / sddl.h).
const SID_ALIASES: &[(&str, &str)] = &[
    ("AA", "S-1-5-32-579"),
    ("AC", "S-1-15-2-1"),
    ("AN", "S-1-5-7"),
    ("AO", "S-1-5-32-548"),
    ("AS", "S-1-18-1"),
    ("AU", "S-1-5-11"),
    ("BA", "S-1-5-32-544"),
    ("BG", "S-1-5-32-546"),
    ("BO", "S-1-5-32-551"),
    ("BU", "S-1-5-32-545"),
    ("CD", "S-1-5-32-574"),
    ("CG", "S-1-3-1"),
    ("CO", "S-1-3-0"),
    ("CY", "S-1-5-32-569"),
    ("ED", "S-1-5-9"),
    ("ER", "S-1-5-32-573"),
    ("ES", "S-1-5-32-576"),
    ("HA", "S-1-5-32-578"),
    ("HI", "S-1-16-12288"),
    ("IS", "S-1-5-32-568"),
    ("IU", "S-1-5-4"),
    ("LS", "S-1-5-19"),
    ("LU", "S-1-5-32-559"),
    ("LW", "S-1-16-4096"),
    ("ME", "S-1-16-8192"),
    ("MP", "S-1-16-8448"),
    ("MS", "S-1-5-32-577"),
    ("MU", "S-1-5-32-558"),
    ("NO", "S-1-5-32-556"),
    ("NS", "S-1-5-20"),
    ("NU", "S-1-5-2"),
    ("OW", "S-1-3-4"),
    ("PO", "S-1-5-32-550"),
    ("PS", "S-1-5-10"),
    ("PU", "S-1-5-32-547"),
    ("RA", "S-1-5-32-575"),
    ("RC", "S-1-5-12"),
    ("RD", "S-1-5-32-555"),
    ("RE", "S-1-5-32-552"),
    ("RM", "S-1-5-32-580"),
    ("RU", "S-1-5-32-554"),
    ("SI", "S-1-16-16384"),
    ("SO", "S-1-5-32-549"),
    ("SS", "S-1-18-2"),
    ("SU", "S-1-5-6"),
    ("SY", "S-1-5-18"),
    ("UD", "S-1-5-84-0-0-0-0-0"),
    ("WD", "S-1-1-0"),
    ("WR", "S-1-5-33"),
];

/// Aliases that name a SID of the machine's or forest's domain: not resolvable offline.
const DOMAIN_ALIASES: &[&str] = &[
    "AP", "CA", "CN", "DA", "DC", "DD", "DG", "DU", "EA", "EK", "KA", "LA", "LG", "PA", "RO", "RS",
    "SA",
];

const RIGHT_ALIASES: &[(&str, u32)] = &[
    ("GA", 0x1000_0000),
    ("GR", 0x8000_0000),
    ("GW", 0x4000_0000),
    ("GX", 0x2000_0000),
    ("RC", 0x0002_0000),
    ("SD", 0x0001_0000),
    ("WD", 0x0004_0000),
    ("WO", 0x0008_0000),
    ("RP", 0x0000_0010),
    ("WP", 0x0000_0020),
    ("CC", 0x0000_0001),
    ("DC", 0x0000_0002),
    ("LC", 0x0000_0004),
    ("SW", 0x0000_0008),
    ("LO", 0x0000_0080),
    ("DT", 0x0000_0040),
    ("CR", 0x0000_0100),
    ("FA", 0x001F_01FF),
    ("FR", 0x0012_0089),
    ("FW", 0x0012_0116),
    ("FX", 0x0012_00A0),
    ("KA", 0x000F_003F),
    ("KR", 0x0002_0019),
    ("KW", 0x0002_0006),
    ("KX", 0x0002_0019),
    ("NW", 0x0000_0001),
    ("NR", 0x0000_0002),
    ("NX", 0x0000_0004),
];

const ACE_FLAG_ALIASES: &[(&str, u8)] = &[
    ("OI", 0x01),
    ("CI", 0x02),
    ("NP", 0x04),
    ("IO", 0x08),
    ("ID", 0x10),
    ("SA", 0x40),
    ("FA", 0x80),
];

/// (alias, ACE type, is object ACE)
const ACE_TYPES: &[(&str, u8, bool)] = &[
    ("A", 0x00, false),
    ("D", 0x01, false),
    ("AU", 0x02, false),
    ("AL", 0x03, false),
    ("OA", 0x05, true),
    ("OD", 0x06, true),
    ("OU", 0x07, true),
    ("OL", 0x08, true),
    ("ML", 0x11, false),
    ("SP", 0x13, false),
];

/// ACE types SDDL can spell but that carry conditions or attributes this converter does not build.
const UNSUPPORTED_ACE_TYPES: &[&str] = &["XA", "XD", "ZA", "XU", "RA"];

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    /// An error for the bytes `start..end`, widened to whole characters so that a token holding
    /// non-ASCII text is reported intact.
    fn err(&self, start: usize, end: usize, reason: &'static str) -> SddlError {
        let mut start = start.min(self.s.len());
        while !self.s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = end.clamp(start, self.s.len());
        while !self.s.is_char_boundary(end) {
            end += 1;
        }
        SddlError {
            offset: start,
            token: self.s[start..end].to_string(),
            reason,
        }
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    /// True when the text at the cursor starts a new component (`O:`, `G:`, `D:`, `S:`).
    fn at_component(&self) -> bool {
        let b = self.rest().as_bytes();
        b.len() >= 2 && matches!(b[0], b'O' | b'G' | b'D' | b'S') && b[1] == b':'
    }
}

/// Parses a SID string: a two-letter alias or `S-1-<authority>-<sub>...`.
fn parse_sid_token(tok: &str) -> Result<Vec<u8>, &'static str> {
    if let Some((_, sid)) = SID_ALIASES.iter().find(|(a, _)| *a == tok) {
        return sid_from_string(sid);
    }
    if DOMAIN_ALIASES.contains(&tok) {
        return Err("domain-relative SID alias cannot be resolved without a domain");
    }
    if tok.starts_with("S-") {
        return sid_from_string(tok);
    }
    Err("unknown SID alias")
}

fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

/// Most sub-authorities a SID has ([MS-DTYP] 2.4.2.2, SID_MAX_SUB_AUTHORITIES).
const SID_MAX_SUB_AUTHORITIES: usize = 15;

/// Binary SID ([MS-DTYP] 2.4.2.2) from `S-1-<authority>-<sub>...`.
pub fn sid_from_string(s: &str) -> Result<Vec<u8>, &'static str> {
    let mut parts = s.split('-');
    if parts.next() != Some("S") || parts.next() != Some("1") {
        return Err("SID must start with S-1-");
    }
    let authority = parts
        .next()
        .and_then(parse_number)
        .ok_or("bad SID authority")?;
    if authority >= 1 << 48 {
        return Err("SID authority does not fit 48 bits");
    }
    let subs: Vec<u32> = parts
        .map(|p| parse_number(p).and_then(|n| u32::try_from(n).ok()))
        .collect::<Option<_>>()
        .ok_or("bad SID sub-authority")?;
    if subs.len() > SID_MAX_SUB_AUTHORITIES {
        return Err("SID has more than 15 sub-authorities");
    }
    let mut out = vec![1, subs.len() as u8];
    out.extend_from_slice(&authority.to_be_bytes()[2..]);
    for sub in subs {
        out.extend_from_slice(&sub.to_le_bytes());
    }
    Ok(out)
}

/// Formats a binary SID as `S-1-...`; None when the bytes are not a SID (revision 1, at most
/// 15 sub-authorities, as `sid_from_string` and [MS-DTYP] 2.4.2.2 require).
pub fn sid_to_string(b: &[u8]) -> Option<String> {
    let count = usize::from(*b.get(1)?);
    if *b.first()? != 1 || count > SID_MAX_SUB_AUTHORITIES || b.len() < 8 + 4 * count {
        return None;
    }
    let mut auth = [0u8; 8];
    auth[2..].copy_from_slice(&b[2..8]);
    let mut s = format!("S-1-{}", u64::from_be_bytes(auth));
    for c in b[8..8 + 4 * count].chunks_exact(4) {
        s.push_str(&format!(
            "-{}",
            u32::from_le_bytes([c[0], c[1], c[2], c[3]])
        ));
    }
    Some(s)
}

/// GUID in its textual form to the 16 bytes Windows stores (first three fields little-endian).
fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5
        || groups
            .iter()
            .zip(lens)
            .any(|(g, l)| g.len() != l || !g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    let d1 = u32::from_str_radix(groups[0], 16).ok()?;
    let d2 = u16::from_str_radix(groups[1], 16).ok()?;
    let d3 = u16::from_str_radix(groups[2], 16).ok()?;
    let tail = format!("{}{}", groups[3], groups[4]);
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&d1.to_le_bytes());
    out[4..6].copy_from_slice(&d2.to_le_bytes());
    out[6..8].copy_from_slice(&d3.to_le_bytes());
    for i in 0..8 {
        out[8 + i] = u8::from_str_radix(&tail[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse_two_letter_set<T: Copy>(
    field: &str,
    table: &[(&str, T)],
    mut fold: impl FnMut(T),
) -> Result<(), usize> {
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let tok = field.get(i..i + 2).ok_or(i)?;
        let (_, v) = table.iter().find(|(a, _)| *a == tok).ok_or(i)?;
        fold(*v);
        i += 2;
    }
    Ok(())
}

struct Acl {
    /// None = NULL ACL (NO_ACCESS_CONTROL).
    aces: Option<Vec<Vec<u8>>>,
    control: u16,
    has_object_ace: bool,
}

fn parse_ace(p: &Parser<'_>, start: usize, body: &str) -> Result<(Vec<u8>, bool), SddlError> {
    let fields: Vec<&str> = body.split(';').collect();
    let whole = |reason| p.err(start, start + body.len(), reason);
    if fields.len() != 6 {
        return Err(whole(
            "ACE must have 6 fields (conditional and resource ACEs are not supported)",
        ));
    }
    // byte offset of field i inside the string, for error messages
    let field_off = |i: usize| start + fields[..i].iter().map(|f| f.len() + 1).sum::<usize>();
    let ferr = |i: usize, reason| p.err(field_off(i), field_off(i) + fields[i].len(), reason);

    let (ace_type, is_object) = match ACE_TYPES.iter().find(|(a, _, _)| *a == fields[0]) {
        Some((_, t, o)) => (*t, *o),
        None if UNSUPPORTED_ACE_TYPES.contains(&fields[0]) => {
            return Err(ferr(0, "unsupported ACE type"));
        }
        None => return Err(ferr(0, "unknown ACE type")),
    };
    let mut flags = 0u8;
    parse_two_letter_set(fields[1], ACE_FLAG_ALIASES, |v| flags |= v).map_err(|i| {
        let off = field_off(1) + i;
        p.err(off, off + 2, "unknown ACE flag")
    })?;
    let mask = if fields[2].starts_with("0x")
        || fields[2].starts_with("0X")
        || fields[2].bytes().next().is_some_and(|b| b.is_ascii_digit())
    {
        parse_number(fields[2])
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ferr(2, "bad access mask number"))?
    } else {
        let mut m = 0u32;
        parse_two_letter_set(fields[2], RIGHT_ALIASES, |v| m |= v).map_err(|i| {
            let off = field_off(2) + i;
            p.err(off, off + 2, "unknown access right")
        })?;
        m
    };
    let guid = |i: usize| -> Result<Option<[u8; 16]>, SddlError> {
        if fields[i].is_empty() {
            return Ok(None);
        }
        if !is_object {
            return Err(ferr(i, "object GUID on an ACE type that has none"));
        }
        parse_guid(fields[i])
            .map(Some)
            .ok_or_else(|| ferr(i, "bad GUID"))
    };
    let object_type = guid(3)?;
    let inherited_type = guid(4)?;
    let sid = parse_sid_token(fields[5]).map_err(|reason| ferr(5, reason))?;

    let mut ace = vec![ace_type, flags, 0, 0];
    ace.extend_from_slice(&mask.to_le_bytes());
    if is_object {
        let mut oflags = 0u32;
        if object_type.is_some() {
            oflags |= ACE_OBJECT_TYPE_PRESENT;
        }
        if inherited_type.is_some() {
            oflags |= ACE_INHERITED_OBJECT_TYPE_PRESENT;
        }
        ace.extend_from_slice(&oflags.to_le_bytes());
        for g in [object_type, inherited_type].into_iter().flatten() {
            ace.extend_from_slice(&g);
        }
    }
    ace.extend_from_slice(&sid);
    let size = u16::try_from(ace.len()).map_err(|_| whole("ACE too large"))?;
    ace[2..4].copy_from_slice(&size.to_le_bytes());
    Ok((ace, is_object))
}

fn parse_acl(p: &mut Parser<'_>, is_dacl: bool) -> Result<Acl, SddlError> {
    use control::*;
    let (protected, auto_inherited, auto_req) = if is_dacl {
        (
            SE_DACL_PROTECTED,
            SE_DACL_AUTO_INHERITED,
            SE_DACL_AUTO_INHERIT_REQ,
        )
    } else {
        (
            SE_SACL_PROTECTED,
            SE_SACL_AUTO_INHERITED,
            SE_SACL_AUTO_INHERIT_REQ,
        )
    };
    let mut acl = Acl {
        aces: Some(Vec::new()),
        control: 0,
        has_object_ace: false,
    };
    let mut null = false;
    // flags
    loop {
        p.skip_ws();
        let r = p.rest();
        if r.starts_with("NO_ACCESS_CONTROL") {
            null = true;
            p.pos += "NO_ACCESS_CONTROL".len();
        } else if r.starts_with("AI") {
            acl.control |= auto_inherited;
            p.pos += 2;
        } else if r.starts_with("AR") {
            acl.control |= auto_req;
            p.pos += 2;
        } else if r.starts_with('P') {
            acl.control |= protected;
            p.pos += 1;
        } else {
            break;
        }
    }
    // ACEs
    let mut aces = Vec::new();
    loop {
        p.skip_ws();
        if !p.rest().starts_with('(') {
            break;
        }
        let start = p.pos + 1;
        let close = p
            .rest()
            .find(')')
            .ok_or_else(|| p.err(p.pos, p.s.len(), "unterminated ACE"))?;
        let body = &p.s[start..p.pos + close];
        let (ace, is_object) = parse_ace(p, start, body)?;
        acl.has_object_ace |= is_object;
        aces.push(ace);
        p.pos += close + 1;
    }
    if null {
        if !aces.is_empty() {
            return Err(p.err(p.pos, p.pos, "NO_ACCESS_CONTROL with ACEs"));
        }
        acl.aces = None;
    } else {
        acl.aces = Some(aces);
    }
    p.skip_ws();
    if !p.rest().is_empty() && !p.at_component() {
        let end = p
            .rest()
            .find(['(', ')'])
            .map_or(p.s.len(), |i| p.pos + i.max(1));
        return Err(p.err(p.pos, end, "unknown ACL flag or token"));
    }
    Ok(acl)
}

fn acl_bytes(aces: &[Vec<u8>], has_object_ace: bool) -> Result<Vec<u8>, &'static str> {
    let body: usize = aces.iter().map(Vec::len).sum();
    let size = u16::try_from(8 + body).map_err(|_| "ACL larger than 64 KiB")?;
    let count = u16::try_from(aces.len()).map_err(|_| "too many ACEs")?;
    let rev = if has_object_ace {
        ACL_REVISION_DS
    } else {
        ACL_REVISION
    };
    let mut out = vec![rev, 0];
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    for a in aces {
        out.extend_from_slice(a);
    }
    Ok(out)
}

/// Converts an SDDL string to a self-relative SECURITY_DESCRIPTOR. Parts are laid out after the
/// 20-byte header in the order SACL, DACL, owner, group — the order Windows' RtlMakeSelfRelativeSD
/// uses (INFERENCE from SDs produced on Windows; any order is valid per [MS-DTYP] 2.4.6).
pub fn sddl_to_security_descriptor(sddl: &str) -> Result<Vec<u8>, SddlError> {
    let mut p = Parser { s: sddl, pos: 0 };
    let mut owner = None;
    let mut group = None;
    let mut dacl: Option<Acl> = None;
    let mut sacl: Option<Acl> = None;
    loop {
        p.skip_ws();
        if p.rest().is_empty() {
            break;
        }
        if !p.at_component() {
            let end = p.rest().find(':').map_or(p.s.len(), |i| p.pos + i + 1);
            return Err(p.err(p.pos, end, "expected O:, G:, D: or S:"));
        }
        let which = p.rest().as_bytes()[0];
        let comp_start = p.pos;
        p.pos += 2;
        let dup = |p: &Parser<'_>| p.err(comp_start, comp_start + 2, "component given twice");
        match which {
            b'O' | b'G' => {
                p.skip_ws();
                let start = p.pos;
                let r = p.rest();
                let len = if r.starts_with("S-") {
                    r.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .map(|n| {
                            // stop before a following component such as "G:" glued to the SID
                            let t = &r[..n];
                            match t.rfind(['G', 'D', 'S', 'O']) {
                                Some(k) if k > 0 && r.as_bytes().get(k + 1) == Some(&b':') => k,
                                _ => n,
                            }
                        })
                        .unwrap_or(r.len())
                } else {
                    // an alias is two characters; measure them in bytes for non-ASCII input
                    r.char_indices().nth(2).map_or(r.len(), |(i, _)| i)
                };
                let tok = &r[..len];
                let sid =
                    parse_sid_token(tok).map_err(|reason| p.err(start, start + len, reason))?;
                p.pos += len;
                let slot = if which == b'O' {
                    &mut owner
                } else {
                    &mut group
                };
                if slot.is_some() {
                    return Err(dup(&p));
                }
                *slot = Some(sid);
            }
            b'D' => {
                if dacl.is_some() {
                    return Err(dup(&p));
                }
                dacl = Some(parse_acl(&mut p, true)?);
            }
            _ => {
                if sacl.is_some() {
                    return Err(dup(&p));
                }
                sacl = Some(parse_acl(&mut p, false)?);
            }
        }
    }

    use control::*;
    let mut ctl = SE_SELF_RELATIVE;
    let mut out = vec![0u8; 20];
    let too_big = |reason| SddlError {
        offset: 0,
        token: String::new(),
        reason,
    };
    let place = |out: &mut Vec<u8>, bytes: &[u8]| -> u32 {
        let off = out.len() as u32;
        out.extend_from_slice(bytes);
        off
    };
    let mut off_sacl = 0;
    let mut off_dacl = 0;
    if let Some(acl) = &sacl {
        ctl |= SE_SACL_PRESENT | acl.control;
        if let Some(aces) = &acl.aces {
            off_sacl = place(
                &mut out,
                &acl_bytes(aces, acl.has_object_ace).map_err(too_big)?,
            );
        }
    }
    if let Some(acl) = &dacl {
        ctl |= SE_DACL_PRESENT | acl.control;
        if let Some(aces) = &acl.aces {
            off_dacl = place(
                &mut out,
                &acl_bytes(aces, acl.has_object_ace).map_err(too_big)?,
            );
        }
    }
    let off_owner = owner.as_ref().map_or(0, |s| place(&mut out, s));
    let off_group = group.as_ref().map_or(0, |s| place(&mut out, s));
    out[0] = 1;
    out[2..4].copy_from_slice(&ctl.to_le_bytes());
    out[4..8].copy_from_slice(&off_owner.to_le_bytes());
    out[8..12].copy_from_slice(&off_group.to_le_bytes());
    out[12..16].copy_from_slice(&off_sacl.to_le_bytes());
    out[16..20].copy_from_slice(&off_dacl.to_le_bytes());
    Ok(out)
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn format_error(offset: usize, reason: &'static str) -> SddlError {
    SddlError {
        offset,
        token: String::new(),
        reason,
    }
}

/// A SID at `off` of `sd`: its alias when it has one, else `S-1-...`; and its length.
fn format_sid(sd: &[u8], off: usize) -> Result<(String, usize), SddlError> {
    let count = usize::from(
        *sd.get(off + 1)
            .ok_or_else(|| format_error(off, "SID runs past the end"))?,
    );
    if count > SID_MAX_SUB_AUTHORITIES {
        // Such a SID would format to text that neither we nor Windows parse back.
        return Err(format_error(off, "SID has more than 15 sub-authorities"));
    }
    let len = 8 + 4 * count;
    let bytes = sd
        .get(off..off + len)
        .ok_or_else(|| format_error(off, "SID runs past the end"))?;
    let s = sid_to_string(bytes).ok_or_else(|| format_error(off, "bad SID"))?;
    let alias = SID_ALIASES
        .iter()
        .find(|(_, v)| *v == s)
        .map(|(a, _)| a.to_string());
    Ok((alias.unwrap_or(s), len))
}

fn format_guid(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// Access mask as an exact composite alias (FA, KR...), as generic/standard aliases, or hex.
fn format_rights(mask: u32, mandatory_label: bool) -> String {
    if mandatory_label && mask != 0 && mask & !0x7 == 0 {
        let labels = [("NW", 1), ("NR", 2), ("NX", 4)];
        return labels
            .iter()
            .filter(|(_, v)| mask & v != 0)
            .map(|(a, _)| *a)
            .collect();
    }
    const COMPOSITE: &[&str] = &["FA", "FR", "FW", "FX", "KA", "KR", "KW"];
    const SIMPLE: &[&str] = &["GA", "GR", "GW", "GX", "RC", "SD", "WD", "WO"];
    let value = |a: &str| {
        RIGHT_ALIASES
            .iter()
            .find(|(n, _)| *n == a)
            .map_or(0, |(_, v)| *v)
    };
    if let Some(a) = COMPOSITE.iter().find(|a| value(a) == mask) {
        return a.to_string();
    }
    if mask != 0 && SIMPLE.iter().fold(0, |acc, a| acc | value(a)) & mask == mask {
        return SIMPLE
            .iter()
            .filter(|a| mask & value(a) != 0)
            .copied()
            .collect();
    }
    format!("{mask:#x}")
}

fn format_acl(sd: &[u8], off: usize, out: &mut String) -> Result<(), SddlError> {
    let size =
        usize::from(u16_at(sd, off + 2).ok_or_else(|| format_error(off, "ACL runs past the end"))?);
    let count = u16_at(sd, off + 4).ok_or_else(|| format_error(off, "ACL runs past the end"))?;
    let acl = sd
        .get(off..off + size)
        .ok_or_else(|| format_error(off, "ACL runs past the end"))?;
    let mut pos = 8;
    for _ in 0..count {
        let at = off + pos;
        let bad = || format_error(at, "ACE runs past its ACL");
        let ace_type = *acl.get(pos).ok_or_else(bad)?;
        let flags = *acl.get(pos + 1).ok_or_else(bad)?;
        let ace_size = usize::from(u16_at(acl, pos + 2).ok_or_else(bad)?);
        let ace = acl.get(pos..pos + ace_size).ok_or_else(bad)?;
        let (alias, is_object) = ACE_TYPES
            .iter()
            .find(|(_, t, _)| *t == ace_type)
            .map(|(a, _, o)| (*a, *o))
            .ok_or_else(|| format_error(at, "ACE type has no SDDL form here"))?;
        let mask = u32_at(ace, 4).ok_or_else(bad)?;
        let mut body = 8;
        let (mut object, mut inherited) = (String::new(), String::new());
        if is_object {
            let oflags = u32_at(ace, 8).ok_or_else(bad)?;
            body = 12;
            for (bit, slot) in [
                (ACE_OBJECT_TYPE_PRESENT, &mut object),
                (ACE_INHERITED_OBJECT_TYPE_PRESENT, &mut inherited),
            ] {
                if oflags & bit != 0 {
                    *slot = format_guid(ace.get(body..body + 16).ok_or_else(bad)?);
                    body += 16;
                }
            }
        }
        let (sid, sid_len) = format_sid(ace, body).map_err(|_| bad())?;
        if body + sid_len > ace.len() {
            return Err(bad());
        }
        let flag_str: String = ACE_FLAG_ALIASES
            .iter()
            .filter(|(_, v)| flags & v != 0)
            .map(|(a, _)| *a)
            .collect();
        if ACE_FLAG_ALIASES.iter().fold(0, |acc, (_, v)| acc | v) & flags != flags {
            return Err(format_error(at, "ACE flag has no SDDL form"));
        }
        out.push_str(&format!(
            "({alias};{flag_str};{};{object};{inherited};{sid})",
            format_rights(mask, alias == "ML")
        ));
        pos += ace_size;
    }
    Ok(())
}

/// Converts a self-relative security descriptor to SDDL (for display and for writers of the
/// legacy `MSWINDOWS.sd` record); `sddl_to_security_descriptor` of the result gives back the
/// same owner, group, control flags and ACEs.
pub fn security_descriptor_to_sddl(sd: &[u8]) -> Result<String, SddlError> {
    use control::*;
    if sd.len() < 20 || sd[0] != 1 {
        return Err(format_error(0, "not a revision-1 security descriptor"));
    }
    let ctl = u16_at(sd, 2).unwrap_or(0);
    if ctl & SE_SELF_RELATIVE == 0 {
        return Err(format_error(2, "not self-relative"));
    }
    let off = |i: usize| u32_at(sd, 4 + 4 * i).map_or(0, |v| v as usize);
    let (owner, group, sacl, dacl) = (off(0), off(1), off(2), off(3));
    let mut out = String::new();
    if owner != 0 {
        out.push_str(&format!("O:{}", format_sid(sd, owner)?.0));
    }
    if group != 0 {
        out.push_str(&format!("G:{}", format_sid(sd, group)?.0));
    }
    let parts = [
        (
            SE_DACL_PRESENT,
            dacl,
            "D:",
            SE_DACL_PROTECTED,
            SE_DACL_AUTO_INHERIT_REQ,
            SE_DACL_AUTO_INHERITED,
        ),
        (
            SE_SACL_PRESENT,
            sacl,
            "S:",
            SE_SACL_PROTECTED,
            SE_SACL_AUTO_INHERIT_REQ,
            SE_SACL_AUTO_INHERITED,
        ),
    ];
    for (present, at, tag, protected, req, inherited) in parts {
        if ctl & present == 0 {
            continue;
        }
        out.push_str(tag);
        for (bit, s) in [(protected, "P"), (req, "AR"), (inherited, "AI")] {
            if ctl & bit != 0 {
                out.push_str(s);
            }
        }
        if at == 0 {
            out.push_str("NO_ACCESS_CONTROL");
        } else {
            format_acl(sd, at, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sids_from_strings_and_aliases() {
        assert_eq!(
            sid_from_string("S-1-5-18").unwrap(),
            hex("01 01 000000000005 12000000")
        );
        assert_eq!(
            parse_sid_token("BA").unwrap(),
            hex("01 02 000000000005 20000000 20020000")
        );
        assert_eq!(
            parse_sid_token("WD").unwrap(),
            hex("01 01 000000000001 00000000")
        );
        assert_eq!(
            sid_from_string("S-1-0x10-1").unwrap(),
            hex("01 01 000000000010 01000000")
        );
        assert_eq!(
            sid_to_string(&parse_sid_token("UD").unwrap()).unwrap(),
            "S-1-5-84-0-0-0-0-0"
        );
        assert!(parse_sid_token("DA").unwrap_err().contains("domain"));
        assert!(parse_sid_token("ZZ").is_err());
        assert!(sid_from_string("S-1-5-4294967296").is_err());
        assert!(sid_from_string("S-2-5").is_err());
    }

    /// Computed by hand from [MS-DTYP]: header 20 bytes; DACL at 0x14 (8 + one ACE of
    /// 4 + 4 + 12 = 20 -> 28 = 0x1C bytes); owner BA (16 bytes) at 0x30; group SY (12) at 0x40.
    #[test]
    fn owner_group_and_one_allow_ace() {
        let sd = sddl_to_security_descriptor("O:BAG:SYD:(A;;FA;;;SY)").unwrap();
        let want = hex("01 00 0480 30000000 40000000 00000000 14000000
             02 00 1C00 0100 0000
             00 00 1400 FF011F00 0101 000000000005 12000000
             0102 000000000005 20000000 20020000
             0101 000000000005 12000000");
        assert_eq!(sd, want);
    }

    /// Protected, auto-inherited DACL; ACE flags OICI + ID; hex mask; literal SID; SACL audit.
    #[test]
    fn flags_hex_rights_and_sacl() {
        let sd = sddl_to_security_descriptor(
            "O:S-1-5-32-544D:PAI(A;OICIID;0x1200a9;;;BU)(D;;GW;;;WD)S:(AU;FA;FA;;;WD)",
        )
        .unwrap();
        // control: SELF_RELATIVE|DACL_PRESENT|SACL_PRESENT|DACL_PROTECTED|DACL_AUTO_INHERITED
        assert_eq!(
            u16::from_le_bytes([sd[2], sd[3]]),
            0x8000 | 0x4 | 0x10 | 0x1000 | 0x400
        );
        // SACL: 8 + (8 + 12) = 28 bytes at 0x14; DACL at 0x30: 8 + (8+16) + (8+12) = 52 -> owner 0x64
        let want = hex("01 00 1494 64000000 00000000 14000000 30000000
             02 00 1C00 0100 0000
             02 80 1400 FF011F00 0101 000000000001 00000000
             02 00 3400 0200 0000
             00 13 1800 A9001200 0102 000000000005 20000000 21020000
             01 00 1400 00000040 0101 000000000001 00000000
             0102 000000000005 20000000 20020000");
        assert_eq!(sd, want);
    }

    #[test]
    fn null_and_empty_dacls() {
        let null = sddl_to_security_descriptor("D:NO_ACCESS_CONTROL").unwrap();
        assert_eq!(null, hex("01 00 0480 00000000 00000000 00000000 00000000"));
        let empty = sddl_to_security_descriptor("D:P").unwrap();
        assert_eq!(
            empty,
            hex("01 00 0490 00000000 00000000 00000000 14000000 02 00 0800 0000 0000")
        );
    }

    #[test]
    fn object_ace_uses_revision_4_and_mixed_endian_guid() {
        let sd = sddl_to_security_descriptor("D:(OA;;CR;01234567-89ab-cdef-0123-456789abcdef;;AU)")
            .unwrap();
        let want = hex("01 00 0480 00000000 00000000 00000000 14000000
             04 00 3000 0100 0000
             05 00 2800 00010000 01000000 67452301 ab89 efcd 0123456789abcdef
             0101 000000000005 0B000000");
        assert_eq!(sd, want);
    }

    #[test]
    fn mandatory_label_and_whitespace() {
        let sd = sddl_to_security_descriptor(" O:SY G:SY S:(ML;;NW;;;HI) ").unwrap();
        // SACL at 0x14: 8 + (8 + 12) = 28; owner at 0x30, group at 0x3C
        assert_eq!(sd[12..16], [0x14, 0, 0, 0]);
        assert_eq!(sd[0x14 + 8], 0x11);
        assert_eq!(sd[0x14 + 12..0x14 + 16], [1, 0, 0, 0]);
        assert_eq!(sd[4..8], [0x30, 0, 0, 0]);
        assert_eq!(sd[8..12], [0x3C, 0, 0, 0]);
    }

    #[test]
    fn errors_name_the_token() {
        let e = sddl_to_security_descriptor("O:BAD:(A;;QQ;;;SY)").unwrap_err();
        assert_eq!((e.token.as_str(), e.offset), ("QQ", 10));
        let e = sddl_to_security_descriptor("O:XXD:").unwrap_err();
        assert_eq!(e.token, "XX");
        let e = sddl_to_security_descriptor("D:(Q;;FA;;;SY)").unwrap_err();
        assert_eq!(e.token, "Q");
        let e = sddl_to_security_descriptor("D:(A;ZZ;FA;;;SY)").unwrap_err();
        assert_eq!(e.token, "ZZ");
        let e = sddl_to_security_descriptor("D:(XA;;FA;;;SY;(x))").unwrap_err();
        assert!(e.reason.contains("6 fields") || e.reason.contains("unsupported"));
        assert!(sddl_to_security_descriptor("D:(A;;FA;;;SY").is_err());
        assert!(sddl_to_security_descriptor("D:(A;;FA;;;SY)junk").is_err());
        assert!(sddl_to_security_descriptor("X:BA").is_err());
        assert!(sddl_to_security_descriptor("O:BAO:SY").is_err());
        assert!(sddl_to_security_descriptor("D:(A;;FA;1234;;SY)").is_err());
        assert!(sddl_to_security_descriptor("D:NO_ACCESS_CONTROL(A;;FA;;;SY)").is_err());
    }

    /// Non-ASCII text anywhere in the string is an error that quotes whole characters, never a
    /// panic from slicing inside a character (found by fuzzing the tar importer).
    #[test]
    fn non_ascii_is_an_error_not_a_panic() {
        let cases = [
            ("O:\u{e9}", "\u{e9}"),
            ("O:\u{20ac}X", "\u{20ac}X"),
            ("G:A\u{e9}", "A\u{e9}"),
            ("D:(A;\u{20ac};FA;;;SY)", "\u{20ac}"),
            ("D:(A;O\u{e9};FA;;;SY)", "\u{e9}"),
            ("D:(A;;F\u{1F600};;;SY)", "F\u{1F600}"),
            ("D:(A;;FA;;;\u{1F600})", "\u{1F600}"),
            ("D:P\u{e9}", "\u{e9}"),
        ];
        for (sddl, token) in cases {
            let e = sddl_to_security_descriptor(sddl).unwrap_err();
            assert!(e.token.contains(token), "{sddl:?}: token {:?}", e.token);
            assert!(
                sddl.is_char_boundary(e.offset),
                "{sddl:?}: offset {}",
                e.offset
            );
        }
    }

    proptest::proptest! {
        /// Any text, and any text glued onto a valid SDDL prefix, converts or fails cleanly.
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}", prefix in 0usize..5) {
            let prefixes = ["", "O:", "D:(", "D:(A;", "O:BAG:SYD:(A;;FA;;;"];
            let sddl = format!("{}{s}", prefixes[prefix]);
            if let Err(e) = sddl_to_security_descriptor(&sddl) {
                proptest::prop_assert!(sddl.is_char_boundary(e.offset));
            }
        }
    }

    #[test]
    fn literal_sid_followed_by_component() {
        let a = sddl_to_security_descriptor("O:S-1-5-18G:S-1-5-32-544D:").unwrap();
        let b = sddl_to_security_descriptor("O:SYG:BAD:").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn binary_to_sddl_and_back() {
        for sddl in [
            "O:BAG:SYD:(A;;FA;;;SY)",
            "O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464G:SYD:PAI(A;OICIID;0x1200a9;;;BU)(D;;GW;;;WD)S:(AU;FA;FA;;;WD)",
            "D:NO_ACCESS_CONTROL",
            "D:P",
            "D:(OA;CI;0x100;01234567-89ab-cdef-0123-456789abcdef;;AU)(A;;GRGX;;;AC)",
            "O:SYG:SYS:(ML;;NW;;;HI)",
            "D:ARAI(A;OICIIO;GA;;;CO)(A;;KR;;;S-1-5-21-1-2-3-500)",
        ] {
            let bin = sddl_to_security_descriptor(sddl).unwrap();
            let text = security_descriptor_to_sddl(&bin).unwrap();
            assert_eq!(text, sddl, "formatted back");
            assert_eq!(sddl_to_security_descriptor(&text).unwrap(), bin);
        }
    }

    /// Found by the backuptar fuzz target: a binary descriptor whose owner SID has more than 15
    /// sub-authorities formatted to SDDL that `sddl_to_security_descriptor` refuses.
    #[test]
    fn sids_with_more_than_15_sub_authorities_are_refused() {
        let sid = |count: u8| {
            let mut b = vec![1, count, 0, 0, 0, 0, 0, 5];
            for i in 0..u32::from(count) {
                b.extend_from_slice(&(1000 + i).to_le_bytes());
            }
            b
        };
        let fifteen = sid_to_string(&sid(15)).unwrap();
        assert_eq!(sid_from_string(&fifteen).unwrap(), sid(15));
        assert_eq!(sid_to_string(&sid(16)), None);
        assert_eq!(sid_to_string(&sid(255)), None);

        let mut sd = vec![1, 0, 0, 0x80, 20, 0, 0, 0];
        sd.extend_from_slice(&[0; 12]);
        sd.extend_from_slice(&sid(16));
        let e = security_descriptor_to_sddl(&sd).unwrap_err();
        assert_eq!(
            (e.offset, e.reason),
            (20, "SID has more than 15 sub-authorities")
        );
        sd.truncate(20);
        sd.extend_from_slice(&sid(15));
        let text = security_descriptor_to_sddl(&sd).unwrap();
        assert_eq!(sddl_to_security_descriptor(&text).unwrap(), sd);
    }

    #[test]
    fn formatting_rejects_damaged_descriptors() {
        let bin = sddl_to_security_descriptor("O:BAG:SYD:(A;;FA;;;SY)").unwrap();
        for cut in [0, 10, 19, 24, 40, bin.len() - 1] {
            assert!(
                security_descriptor_to_sddl(&bin[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_count = bin.clone();
        bad_count[0x14 + 4] = 200;
        assert!(security_descriptor_to_sddl(&bad_count).is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_descriptors_round_trip(
            owner in proptest::sample::select(SID_ALIASES.iter().map(|(a, _)| *a).collect::<Vec<_>>()),
            aces in proptest::collection::vec(
                (0usize..4, 0u8..0x20, proptest::prelude::any::<u32>(), proptest::sample::select(SID_ALIASES.iter().map(|(a, _)| *a).collect::<Vec<_>>())),
                0..6),
            ctl in 0u16..8,
        ) {
            let types = ["A", "D", "AU", "AL"];
            let mut sddl = format!("O:{owner}D:");
            for (bit, s) in [(1, "P"), (2, "AR"), (4, "AI")] {
                if ctl & bit != 0 { sddl.push_str(s); }
            }
            for (t, flags, mask, sid) in &aces {
                let fl: String = ACE_FLAG_ALIASES.iter().filter(|(_, v)| flags & v != 0).map(|(a, _)| *a).collect();
                sddl.push_str(&format!("({};{fl};{mask:#x};;;{sid})", types[*t]));
            }
            let bin = sddl_to_security_descriptor(&sddl).unwrap();
            let text = security_descriptor_to_sddl(&bin).unwrap();
            proptest::prop_assert_eq!(sddl_to_security_descriptor(&text).unwrap(), bin);
        }
    }
}
