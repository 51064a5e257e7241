//! Windows case mapping (the NTFS `$UpCase` table) and case-insensitive name ordering.
//!
//! Windows compares file and registry names by upcasing each UTF-16 code unit through a fixed
//! 64K-entry table (`RtlUpcaseUnicodeChar`); surrogates and code units without a mapping stay as
//! they are. CimFS stores that table in every image and sorts directory entries with it; registry
//! hives sort subkeys and hash their names with it. [`quote`] shows such a name in a message.

#![warn(missing_docs)]

use std::cmp::Ordering;
use std::sync::OnceLock;

/// Runs of code units whose upper case is `unit + delta`: `(first, last, delta, step)`, where
/// `step` 2 means only every other unit of the run (alternating lower/upper case pairs).
///
/// The data is the mapping of the `$UpCase` file that mkntfs (ntfs-3g 2022.10.3) writes, which
/// matches what is known of Windows' own table: only mappings whose lower case maps back are kept
/// (so U+00B5, U+0131, U+017F, U+00DF and U+03C2 map to themselves, U+00FF maps to U+0178), and
/// case pairs added to Unicode after about 5.1 are absent. 973 code units in all.
const RUNS: &[(u16, u16, i32, u16)] = &[
    (0x0061, 0x007A, -32, 1),
    (0x00E0, 0x00F6, -32, 1),
    (0x00F8, 0x00FE, -32, 1),
    (0x00FF, 0x00FF, 121, 1),
    (0x0101, 0x012F, -1, 2),
    (0x0133, 0x0137, -1, 2),
    (0x013A, 0x0148, -1, 2),
    (0x014B, 0x0177, -1, 2),
    (0x017A, 0x017E, -1, 2),
    (0x0180, 0x0180, 195, 1),
    (0x0183, 0x0185, -1, 2),
    (0x0188, 0x0188, -1, 1),
    (0x018C, 0x018C, -1, 1),
    (0x0192, 0x0192, -1, 1),
    (0x0195, 0x0195, 97, 1),
    (0x0199, 0x0199, -1, 1),
    (0x019A, 0x019A, 163, 1),
    (0x019E, 0x019E, 130, 1),
    (0x01A1, 0x01A5, -1, 2),
    (0x01A8, 0x01A8, -1, 1),
    (0x01AD, 0x01AD, -1, 1),
    (0x01B0, 0x01B0, -1, 1),
    (0x01B4, 0x01B6, -1, 2),
    (0x01B9, 0x01B9, -1, 1),
    (0x01BD, 0x01BD, -1, 1),
    (0x01BF, 0x01BF, 56, 1),
    (0x01C6, 0x01C6, -2, 1),
    (0x01C9, 0x01C9, -2, 1),
    (0x01CC, 0x01CC, -2, 1),
    (0x01CE, 0x01DC, -1, 2),
    (0x01DD, 0x01DD, -79, 1),
    (0x01DF, 0x01EF, -1, 2),
    (0x01F3, 0x01F3, -2, 1),
    (0x01F5, 0x01F5, -1, 1),
    (0x01F9, 0x021F, -1, 2),
    (0x0223, 0x0233, -1, 2),
    (0x023C, 0x023C, -1, 1),
    (0x0242, 0x0242, -1, 1),
    (0x0247, 0x024F, -1, 2),
    (0x0250, 0x0250, 10783, 1),
    (0x0251, 0x0251, 10780, 1),
    (0x0253, 0x0253, -210, 1),
    (0x0254, 0x0254, -206, 1),
    (0x0256, 0x0257, -205, 1),
    (0x0259, 0x0259, -202, 1),
    (0x025B, 0x025B, -203, 1),
    (0x0260, 0x0260, -205, 1),
    (0x0263, 0x0263, -207, 1),
    (0x0268, 0x0268, -209, 1),
    (0x0269, 0x0269, -211, 1),
    (0x026B, 0x026B, 10743, 1),
    (0x026F, 0x026F, -211, 1),
    (0x0271, 0x0271, 10749, 1),
    (0x0272, 0x0272, -213, 1),
    (0x0275, 0x0275, -214, 1),
    (0x027D, 0x027D, 10727, 1),
    (0x0280, 0x0280, -218, 1),
    (0x0283, 0x0283, -218, 1),
    (0x0288, 0x0288, -218, 1),
    (0x0289, 0x0289, -69, 1),
    (0x028A, 0x028B, -217, 1),
    (0x028C, 0x028C, -71, 1),
    (0x0292, 0x0292, -219, 1),
    (0x0371, 0x0373, -1, 2),
    (0x0377, 0x0377, -1, 1),
    (0x037B, 0x037D, 130, 1),
    (0x03AC, 0x03AC, -38, 1),
    (0x03AD, 0x03AF, -37, 1),
    (0x03B1, 0x03C1, -32, 1),
    (0x03C3, 0x03CB, -32, 1),
    (0x03CC, 0x03CC, -64, 1),
    (0x03CD, 0x03CE, -63, 1),
    (0x03D7, 0x03D7, -8, 1),
    (0x03D9, 0x03EF, -1, 2),
    (0x03F2, 0x03F2, 7, 1),
    (0x03F8, 0x03F8, -1, 1),
    (0x03FB, 0x03FB, -1, 1),
    (0x0430, 0x044F, -32, 1),
    (0x0450, 0x045F, -80, 1),
    (0x0461, 0x0481, -1, 2),
    (0x048B, 0x04BF, -1, 2),
    (0x04C2, 0x04CE, -1, 2),
    (0x04CF, 0x04CF, -15, 1),
    (0x04D1, 0x0523, -1, 2),
    (0x0561, 0x0586, -48, 1),
    (0x1D79, 0x1D79, 35332, 1),
    (0x1D7D, 0x1D7D, 3814, 1),
    (0x1E01, 0x1E95, -1, 2),
    (0x1EA1, 0x1EFF, -1, 2),
    (0x1F00, 0x1F07, 8, 1),
    (0x1F10, 0x1F15, 8, 1),
    (0x1F20, 0x1F27, 8, 1),
    (0x1F30, 0x1F37, 8, 1),
    (0x1F40, 0x1F45, 8, 1),
    (0x1F51, 0x1F57, 8, 2),
    (0x1F60, 0x1F67, 8, 1),
    (0x1F70, 0x1F71, 74, 1),
    (0x1F72, 0x1F75, 86, 1),
    (0x1F76, 0x1F77, 100, 1),
    (0x1F78, 0x1F79, 128, 1),
    (0x1F7A, 0x1F7B, 112, 1),
    (0x1F7C, 0x1F7D, 126, 1),
    (0x1F80, 0x1F87, 8, 1),
    (0x1F90, 0x1F97, 8, 1),
    (0x1FA0, 0x1FA7, 8, 1),
    (0x1FB0, 0x1FB1, 8, 1),
    (0x1FB3, 0x1FB3, 9, 1),
    (0x1FC3, 0x1FC3, 9, 1),
    (0x1FD0, 0x1FD1, 8, 1),
    (0x1FE0, 0x1FE1, 8, 1),
    (0x1FE5, 0x1FE5, 7, 1),
    (0x1FF3, 0x1FF3, 9, 1),
    (0x214E, 0x214E, -28, 1),
    (0x2170, 0x217F, -16, 1),
    (0x2184, 0x2184, -1, 1),
    (0x24D0, 0x24E9, -26, 1),
    (0x2C30, 0x2C5E, -48, 1),
    (0x2C61, 0x2C61, -1, 1),
    (0x2C65, 0x2C65, -10795, 1),
    (0x2C66, 0x2C66, -10792, 1),
    (0x2C68, 0x2C6C, -1, 2),
    (0x2C73, 0x2C73, -1, 1),
    (0x2C76, 0x2C76, -1, 1),
    (0x2C81, 0x2CE3, -1, 2),
    (0x2D00, 0x2D25, -7264, 1),
    (0xA641, 0xA65F, -1, 2),
    (0xA663, 0xA66D, -1, 2),
    (0xA681, 0xA697, -1, 2),
    (0xA723, 0xA72F, -1, 2),
    (0xA733, 0xA76F, -1, 2),
    (0xA77A, 0xA77C, -1, 2),
    (0xA77F, 0xA787, -1, 2),
    (0xA78C, 0xA78C, -1, 1),
    (0xFF41, 0xFF5A, -32, 1),
];

/// The whole table: `table()[c]` is the upper case of the UTF-16 code unit `c`.
pub fn table() -> &'static [u16; 65536] {
    static TABLE: OnceLock<Box<[u16; 65536]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Box<[u16; 65536]> = Box::new([0; 65536]);
        for (i, slot) in t.iter_mut().enumerate() {
            *slot = i as u16;
        }
        for &(first, last, delta, step) in RUNS {
            let mut c = first;
            loop {
                t[usize::from(c)] = (i32::from(c) + delta) as u16;
                match c.checked_add(step) {
                    Some(next) if next <= last => c = next,
                    _ => break,
                }
            }
        }
        t
    })
}

/// The Windows upper case of one UTF-16 code unit.
pub fn upcase(c: u16) -> u16 {
    table()[usize::from(c)]
}

/// Orders two names the way Windows does: upcased code unit by code unit, compared as unsigned
/// 16-bit numbers; when one name is a prefix of the other, the shorter comes first.
pub fn compare(a: &[u16], b: &[u16]) -> Ordering {
    let t = table();
    a.iter()
        .map(|&c| t[usize::from(c)])
        .cmp(b.iter().map(|&c| t[usize::from(c)]))
}

/// Whether two names are equal ignoring case (Windows rules).
pub fn eq_ignore_case(a: &[u16], b: &[u16]) -> bool {
    a.len() == b.len() && compare(a, b) == Ordering::Equal
}

/// [`compare`] for Rust strings (compared as their UTF-16 encodings).
pub fn compare_str(a: &str, b: &str) -> Ordering {
    let t = table();
    a.encode_utf16()
        .map(|c| t[usize::from(c)])
        .cmp(b.encode_utf16().map(|c| t[usize::from(c)]))
}

/// [`eq_ignore_case`] for Rust strings.
pub fn eq_ignore_case_str(a: &str, b: &str) -> bool {
    compare_str(a, b) == Ordering::Equal
}

/// The upcased UTF-16 units of a string: equal for names Windows treats as one (a key for
/// case-insensitive maps and sets).
pub fn upcase_units(s: &str) -> Vec<u16> {
    s.encode_utf16().map(upcase).collect()
}

/// Upcases a whole string (each UTF-16 code unit through the table; surrogates unchanged).
pub fn upcase_str(s: &str) -> String {
    String::from_utf16_lossy(&upcase_units(s))
}

/// A name or path from an image as text output shows it: control and other invisible
/// characters (a newline, an escape sequence, a direction override) as `?`, which no Windows
/// file name can hold, so one entry stays one line and the terminal shows what is there.
/// (Machine-readable output should carry names exactly.)
pub fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    let hidden =
        |c: char| c != '\\' && c != '\'' && c != '"' && c.escape_debug().next() == Some('\\');
    if name.chars().any(hidden) {
        name.chars()
            .map(|c| if hidden(c) { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        name.into()
    }
}

/// `s` in double quotes for a message: backslashes (Windows path separators) as they are, a
/// double quote as `\"`, control and other invisible characters as `\u{..}` (not `\n` or `\t`,
/// which would read like a path's `\new` or `\temp`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' | '\'' => out.push(c),
            c if c.escape_debug().next() == Some('\\') => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_in_text_output_keep_one_line_and_show_no_escapes() {
        assert_eq!(shown(r"Files\a b\c.txt"), r"Files\a b\c.txt");
        assert_eq!(shown("it's \"é\""), "it's \"é\"");
        assert_eq!(shown("new\nline\x1b[31m\u{202e}x"), "new?line?[31m?x");
    }

    #[test]
    fn quote_keeps_backslashes_and_escapes_quotes_and_controls() {
        assert_eq!(quote(r"C:\"), r#""C:\""#);
        assert_eq!(quote(r"\\server\share"), r#""\\server\share""#);
        assert_eq!(quote(r"Files\new\temp"), r#""Files\new\temp""#);
        assert_eq!(quote("a\"b'c"), r#""a\"b'c""#);
        assert_eq!(quote("a\nb\tc\0"), r#""a\u{a}b\u{9}c\u{0}""#);
        assert_eq!(quote("é…"), "\"é…\"");
    }

    use super::*;

    fn utf16(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn known_windows_mappings() {
        assert_eq!(upcase(u16::from(b'a')), u16::from(b'A'));
        assert_eq!(upcase(u16::from(b'A')), u16::from(b'A'));
        assert_eq!(upcase(0x00FF), 0x0178);
        assert_eq!(upcase(0x00E9), 0x00C9);
        assert_eq!(upcase(0xFF41), 0xFF21);
        // Windows keeps these as they are (their upper case does not map back).
        for c in [0x00B5, 0x0131, 0x017F, 0x00DF, 0x03C2] {
            assert_eq!(upcase(c), c, "U+{c:04X}");
        }
        // Surrogate halves are never changed.
        assert_eq!(upcase(0xD801), 0xD801);
        assert_eq!(
            table()
                .iter()
                .enumerate()
                .filter(|(i, &u)| *i != usize::from(u))
                .count(),
            973
        );
    }

    #[test]
    fn ordering_is_by_upcased_units_then_length() {
        assert_eq!(compare_str("abc", "ABD"), Ordering::Less);
        assert_eq!(compare_str("ABC", "abc"), Ordering::Equal);
        assert_eq!(compare_str("ab", "abc"), Ordering::Less);
        assert_eq!(
            compare_str("_", "a"),
            Ordering::Greater,
            "'_' (0x5F) sorts after 'A' (0x41)"
        );
        // Supplementary characters (surrogates 0xD800..) sort before U+E000..U+FFFF.
        assert_eq!(compare_str("\u{10410}", "\u{FF21}"), Ordering::Less);
        assert!(eq_ignore_case(&utf16("Windows"), &utf16("WINDOWS")));
        assert!(!eq_ignore_case(&utf16("\u{10410}"), &utf16("\u{10438}")));
        assert_eq!(upcase_str("système32"), "SYSTÈME32");
    }

    #[test]
    fn table_matches_mkntfs_upcase_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/testdata/upcase/mkntfs-upcase.bin"
        );
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipping: {path} not found");
            return;
        };
        assert_eq!(bytes.len(), 131072);
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let want = u16::from_le_bytes([pair[0], pair[1]]);
            assert_eq!(table()[i], want, "U+{i:04X}");
        }
    }
}
