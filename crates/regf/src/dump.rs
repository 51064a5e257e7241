//! Text renderings of a hive: a readable dump for `cimkit hive dump` and a regedit-style
//! .reg export.

use std::io::{self, Write};

use crate::format::type_name;
use crate::model::*;

/// Writes a readable dump: a header line (root name, format), a `note:` line per entry of
/// `hive.notes`, then one line per key (path, last-written time, class, layer bits) and one
/// indented line per value with its type name and decoded data.
pub fn dump(hive: &Hive, out: &mut dyn Write) -> io::Result<()> {
    dump_from(hive, "", &hive.root, out)
}

/// Like [`dump`] for the subtree of `key`, whose path below the root is `path` (`A\B`; "" for
/// the root): the header names the subtree, and every key is shown with its full path.
pub fn dump_from(hive: &Hive, path: &str, key: &Key, out: &mut dyn Write) -> io::Result<()> {
    write!(
        out,
        "hive: root \"{}\", format 1.{}{}",
        hive.root.name,
        hive.minor_version,
        if hive.differencing {
            ", differencing"
        } else {
            ""
        }
    )?;
    if path.is_empty() {
        writeln!(out)?;
    } else {
        writeln!(out, "; key \\{path} and below")?;
    }
    for note in &hive.notes {
        writeln!(out, "note: {note}")?;
    }
    key.walk(&mut path.to_string(), &mut |key, path| {
        dump_key(key, path, out)
    })
}

/// One key's line and its values' lines.
fn dump_key(key: &Key, path: &str, out: &mut dyn Write) -> io::Result<()> {
    write!(out, "\\{path}  [{}]", filetime_to_string(key.last_written))?;
    if let Some(class) = key.class_name() {
        write!(out, " class={class:?}")?;
    }
    match key.layer {
        LayerSemantics::Merge => {}
        LayerSemantics::Tombstone => write!(out, " layer=tombstone")?,
        LayerSemantics::SupersedeLocal => write!(out, " layer=supersede-local")?,
        LayerSemantics::SupersedeTree => write!(out, " layer=supersede-tree")?,
    }
    if key.inherit_class {
        write!(out, " inherit-class")?;
    }
    writeln!(out)?;
    for v in &key.values {
        let name = if v.name.is_empty() {
            "(default)".to_string()
        } else {
            format!("{:?}", v.name)
        };
        if v.tombstone {
            writeln!(out, "  {name} (tombstone)")?;
            continue;
        }
        let kind = type_name(v.kind)
            .map(str::to_string)
            .unwrap_or_else(|| format!("type {:#x}", v.kind));
        writeln!(out, "  {name} {kind} = {}", render_data(v))?;
    }
    Ok(())
}

/// Lower-case hex of `data` with `sep` between bytes.
fn hex(data: &[u8], sep: char) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            s.push(sep);
        }
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn render_data(v: &Value) -> String {
    match v.kind {
        REG_SZ | REG_EXPAND_SZ | REG_LINK if v.data.len() & 1 == 0 => {
            format!("{:?}", v.as_string().unwrap_or_default())
        }
        REG_MULTI_SZ if v.data.len() & 1 == 0 => {
            format!("{:?}", v.as_multi_string().unwrap_or_default())
        }
        REG_DWORD | REG_DWORD_BIG_ENDIAN if v.data.len() == 4 => {
            let n = v.as_u32().unwrap_or(0);
            format!("{n:#010x} ({n})")
        }
        REG_QWORD if v.data.len() == 8 => {
            let n = v.as_u64().unwrap_or(0);
            format!("{n:#018x} ({n})")
        }
        _ if v.data.is_empty() => "(empty)".to_string(),
        _ => format!("[{}] {}", v.data.len(), hex(&v.data, ' ')),
    }
}

/// Formats a FILETIME as "YYYY-MM-DD hh:mm:ssZ" (UTC).
pub fn filetime_to_string(ft: u64) -> String {
    let secs = ft / 10_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days from 1601-01-01 to 1970-01-01 are 134774; then Hinnant's civil_from_days.
    let z = days - 134_774 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Writes a regedit ("Windows Registry Editor Version 5.00") export with key paths below
/// `prefix` (e.g. "HKEY_LOCAL_MACHINE\\SYSTEM"). Tombstone keys and values of a
/// differencing hive are written as deletions ("[-key]", "name"=-).
pub fn export_reg(hive: &Hive, prefix: &str, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "Windows Registry Editor Version 5.00")?;
    reg_key(&hive.root, &mut prefix.to_string(), out)
}

fn reg_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `path` is one buffer for the whole walk, as in `dump_key`.
fn reg_key(key: &Key, path: &mut String, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    if key.layer == LayerSemantics::Tombstone {
        return writeln!(out, "[-{path}]");
    }
    writeln!(out, "[{path}]")?;
    for v in &key.values {
        let name = if v.name.is_empty() {
            "@".to_string()
        } else {
            format!("\"{}\"", reg_quote(&v.name))
        };
        if v.tombstone {
            writeln!(out, "{name}=-")?;
            continue;
        }
        writeln!(out, "{name}={}", reg_data(v))?;
    }
    let len = path.len();
    for k in &key.subkeys {
        path.push('\\');
        path.push_str(&k.name);
        let done = reg_key(k, path, out);
        path.truncate(len);
        done?;
    }
    Ok(())
}

fn reg_data(v: &Value) -> String {
    let units = crate::format::utf16le_units(&v.data);
    // A REG_SZ is written as a quoted string only when that loses nothing: even length,
    // exactly one terminating NUL, valid UTF-16, no line breaks.
    if v.kind == REG_SZ && v.data.len() & 1 == 0 {
        if let Some((&0, body)) = units.split_last() {
            if let Ok(s) = String::from_utf16(body) {
                if !s.contains(['\0', '\r', '\n']) {
                    return format!("\"{}\"", reg_quote(&s));
                }
            }
        }
    }
    if v.kind == REG_DWORD && v.data.len() == 4 {
        return format!("dword:{:08x}", v.as_u32().unwrap_or(0));
    }
    let bytes = hex(&v.data, ',');
    if v.kind == REG_BINARY {
        format!("hex:{bytes}")
    } else {
        format!("hex({:x}):{bytes}", v.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetimes_render_as_utc_dates() {
        assert_eq!(filetime_to_string(0), "1601-01-01 00:00:00Z");
        assert_eq!(
            filetime_to_string(116_444_736_000_000_000),
            "1970-01-01 00:00:00Z"
        );
        assert_eq!(
            filetime_to_string(133_000_000_000_000_000),
            "2022-06-18 04:26:40Z"
        );
    }

    #[test]
    fn dump_and_export_show_values() {
        let mut h = Hive::new();
        h.root.last_written = 0;
        let k = h.create_key("Setup");
        k.set_string("CmdLine", "setup.exe \"x\"");
        k.set_u32("", 7);
        k.set_value("raw", REG_BINARY, vec![0xde, 0xad]);
        let mut s = Vec::new();
        dump(&h, &mut s).expect("dump");
        let s = String::from_utf8(s).expect("utf8");
        assert!(s.contains("\\Setup  ["), "{s}");
        assert!(
            s.contains("\"CmdLine\" REG_SZ = \"setup.exe \\\"x\\\"\""),
            "{s}"
        );
        assert!(s.contains("(default) REG_DWORD = 0x00000007 (7)"), "{s}");
        assert!(s.contains("\"raw\" REG_BINARY = [2] de ad"), "{s}");
        let mut r = Vec::new();
        export_reg(&h, "HKLM\\X", &mut r).expect("export");
        let r = String::from_utf8(r).expect("utf8");
        assert!(r.contains("[HKLM\\X\\Setup]\n\"CmdLine\"=\"setup.exe \\\"x\\\"\"\n@=dword:00000007\n\"raw\"=hex:de,ad\n"), "{r}");
    }

    #[test]
    fn a_subtree_dump_names_the_real_root_and_full_paths() {
        let mut h = Hive::new();
        h.create_key("A\\B").set_u32("v", 1);
        h.create_key("Other");
        let k = h.key("A").expect("key");
        let mut s = Vec::new();
        dump_from(&h, "A", k, &mut s).expect("dump");
        let s = String::from_utf8(s).expect("utf8");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "hive: root \"ROOT\", format 1.5; key \\A and below"
        );
        assert!(lines[1].starts_with("\\A  ["), "{s}");
        assert!(lines[2].starts_with("\\A\\B  ["), "{s}");
        assert_eq!(lines[3], "  \"v\" REG_DWORD = 0x00000001 (1)");
        assert_eq!(lines.len(), 4, "{s}");
    }
}
