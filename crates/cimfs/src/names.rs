//! Windows path and name handling shared by the writer and the reader: splitting `\`-separated
//! paths, validating components, and the case-insensitive ordering link tables are sorted by.

use std::cmp::Ordering;

use crate::format::{MAX_NAME_UNITS, MAX_PATH_UNITS};

/// Splits a path inside an image into its components; `\` and `/` both separate and empty
/// components (leading, trailing, doubled separators) are skipped, as the hcsshim reader does.
pub(crate) fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split(['\\', '/']).filter(|c| !c.is_empty())
}

pub(crate) use upcase::quote;

/// Checks one component a writer is asked to create; returns why it is invalid.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("component {} is not allowed", quote(name)));
    }
    let units = name.encode_utf16().count();
    if units > MAX_NAME_UNITS {
        return Err(format!(
            "component is {units} UTF-16 units long, the limit is {MAX_NAME_UNITS}"
        ));
    }
    // NTFS forbids NUL and ':' (the stream separator) in names; '\\' and '/' were split off already.
    if name.contains('\0') {
        return Err("component contains a NUL character".into());
    }
    if name.contains(':') {
        return Err("component contains a colon (:)".into());
    }
    Ok(())
}

/// Checks a whole path's length limit.
pub(crate) fn check_path_len(path: &str) -> Result<(), String> {
    let units = path.encode_utf16().count();
    if units > MAX_PATH_UNITS {
        return Err(format!(
            "path is {units} UTF-16 units long, the limit is {MAX_PATH_UNITS}"
        ));
    }
    Ok(())
}

/// Upcases UTF-16 units through `table` (one entry per BMP unit; surrogates map through it too,
/// which leaves them unchanged in every Windows table).
pub(crate) fn upcase_key(units: &[u16], table: &[u16]) -> Vec<u16> {
    units
        .iter()
        .map(|&u| table.get(usize::from(u)).copied().unwrap_or(u))
        .collect()
}

/// Case-insensitive order of two names: upcased unit by unit, a shorter prefix sorts first
/// (NTFS collation; cim-format.md §A8 recommendation).
pub(crate) fn compare_units(a: &[u16], b: &[u16], table: &[u16]) -> Ordering {
    let up = |u: u16| table.get(usize::from(u)).copied().unwrap_or(u);
    for (x, y) in a.iter().zip(b.iter()) {
        match up(*x).cmp(&up(*y)) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// [`compare_units`] of a stored UTF-16LE name (raw bytes, even length) against `b`.
pub(crate) fn compare_le_bytes(a: &[u8], b: &[u16], table: &[u16]) -> Ordering {
    let up = |u: u16| table.get(usize::from(u)).copied().unwrap_or(u);
    for (x, y) in a.chunks_exact(2).zip(b.iter()) {
        match up(u16::from_le_bytes([x[0], x[1]])).cmp(&up(*y)) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    (a.len() / 2).cmp(&b.len())
}

/// Splits "file:stream" or "file:stream:$DATA" into the file path and the stream name.
/// Returns None when there is no stream part.
pub(crate) fn split_stream(path: &str) -> Option<(&str, &str)> {
    let last_sep = path.rfind(['\\', '/']).map(|i| i + 1).unwrap_or(0);
    let colon = path[last_sep..].find(':')? + last_sep;
    let file = &path[..colon];
    let mut stream = &path[colon + 1..];
    if let Some(s) = strip_suffix_ignore_ascii_case(stream, ":$DATA") {
        stream = s;
    }
    Some((file, stream))
}

fn strip_suffix_ignore_ascii_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    if s.len() >= suffix.len() && s.is_char_boundary(s.len() - suffix.len()) {
        let (head, tail) = s.split_at(s.len() - suffix.len());
        if tail.eq_ignore_ascii_case(suffix) {
            return Some(head);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_components_and_streams() {
        let c: Vec<_> = components("\\Files//Windows\\notepad.exe\\").collect();
        assert_eq!(c, ["Files", "Windows", "notepad.exe"]);
        assert_eq!(
            split_stream("Files\\a.txt:zone:$DATA"),
            Some(("Files\\a.txt", "zone"))
        );
        assert_eq!(
            split_stream("Files\\a.txt:zone"),
            Some(("Files\\a.txt", "zone"))
        );
        assert_eq!(split_stream("Files\\a.txt"), None);
        assert!(check_name("a:b").is_err());
        assert!(check_name("..").is_err());
        assert!(check_name("ok name").is_ok());
    }

    #[test]
    fn orders_case_insensitively_shorter_first() {
        let t = upcase::table();
        let u = |s: &str| s.encode_utf16().collect::<Vec<_>>();
        assert_eq!(compare_units(&u("abc"), &u("ABC"), t), Ordering::Equal);
        assert_eq!(compare_units(&u("ab"), &u("ABC"), t), Ordering::Less);
        assert_eq!(compare_units(&u("b"), &u("A"), t), Ordering::Greater);
    }
}
