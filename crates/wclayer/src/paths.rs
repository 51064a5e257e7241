//! Tar names to layer-relative Windows paths, refusing anything that could land outside the
//! layer (absolute paths, drive letters, `..`) and characters no Windows file name may hold
//! (`< > : " | ? *`, NUL and the other control characters below 0x20). Names Win32 only
//! discourages (`CON`, a trailing dot or space) are kept: NTFS and CimFS store them.

/// A normalized tar entry name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryName {
    /// `Files\Windows\x.dll` (no leading or trailing separator).
    Path(String),
    /// An alternate data stream `file:stream` (the `:$DATA` suffix, if any, removed).
    Stream {
        /// The file's path, as in [`EntryName::Path`].
        file: String,
        /// The stream's name, without `:` or `:$DATA`.
        stream: String,
    },
}

/// Converts a tar name (`/` separators, optional leading `./`, optional trailing `/`) into a
/// relative Windows path. A `:` in the last component makes it an alternate data stream; only
/// the `$DATA` stream type exists in layers, so any other type is refused.
pub fn parse_entry_name(name: &str) -> Result<EntryName, String> {
    let trimmed = name.strip_prefix("./").unwrap_or(name);
    let trimmed = trimmed.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("empty path".into());
    }
    if trimmed.starts_with('/') || trimmed.starts_with('\\') {
        return Err("absolute path".into());
    }
    let mut comps: Vec<&str> = trimmed.split(['/', '\\']).collect();
    let last = comps.pop().unwrap_or_default();
    let (last, stream) = match last.split_once(':') {
        None => (last, None),
        Some((file, rest)) => {
            let stream = match rest.split_once(':') {
                None => rest,
                Some((s, "$DATA")) => s,
                Some((_, ty)) => return Err(format!("stream type {ty:?} is not $DATA")),
            };
            if stream.is_empty() {
                return Err("empty stream name".into());
            }
            if comps.is_empty() && file.len() == 1 && file.as_bytes()[0].is_ascii_alphabetic() {
                return Err("drive-letter path".into());
            }
            (file, Some(stream))
        }
    };
    comps.push(last);
    for c in &comps {
        check_component(c)?;
    }
    if let Some(s) = stream {
        if s.contains(['\0', ':']) {
            return Err(format!("bad stream name {s:?}"));
        }
    }
    let path = comps.join("\\");
    Ok(match stream {
        None => EntryName::Path(path),
        Some(s) => EntryName::Stream {
            file: path,
            stream: s.to_string(),
        },
    })
}

fn check_component(c: &str) -> Result<(), String> {
    match c {
        "" => Err("empty path component".into()),
        "." | ".." => Err(format!("{c:?} path component")),
        _ if c.contains(':') => Err("':' in a path component (drive letter or stream)".into()),
        _ if c.contains('\0') => Err("NUL in a path component".into()),
        _ => match c
            .chars()
            .find(|&ch| matches!(ch, '<' | '>' | '"' | '|' | '?' | '*' | '\u{1}'..='\u{1f}'))
        {
            Some(ch) => Err(format!(
                "{ch:?} in a path component (Windows file names cannot hold it)"
            )),
            None => Ok(()),
        },
    }
}

/// Converts a hard-link target (tar linkname) the same way; streams are not link targets.
pub fn parse_link_target(name: &str) -> Result<String, String> {
    match parse_entry_name(name)? {
        EntryName::Path(p) => Ok(p),
        EntryName::Stream { .. } => Err("a hard link cannot target a stream".into()),
    }
}

/// Splits `dir\name` into (`dir`, `name`); `dir` is empty at the root.
pub fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('\\') {
        Some((d, n)) => (d, n),
        None => ("", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EntryName {
        EntryName::Path(s.into())
    }

    #[test]
    fn normal_names() {
        assert_eq!(
            parse_entry_name("Files/Windows").unwrap(),
            p(r"Files\Windows")
        );
        assert_eq!(parse_entry_name("./Files/a b/").unwrap(), p(r"Files\a b"));
        assert_eq!(parse_entry_name("UtilityVM").unwrap(), p("UtilityVM"));
        assert_eq!(parse_entry_name(r"Files\x").unwrap(), p(r"Files\x"));
    }

    #[test]
    fn streams() {
        let s = EntryName::Stream {
            file: r"Files\a.txt".into(),
            stream: "Zone.Identifier".into(),
        };
        assert_eq!(parse_entry_name("Files/a.txt:Zone.Identifier").unwrap(), s);
        assert_eq!(
            parse_entry_name("Files/a.txt:Zone.Identifier:$DATA").unwrap(),
            s
        );
        assert!(parse_entry_name("Files/a.txt:x:$INDEX_ALLOCATION").is_err());
        assert!(parse_entry_name("Files/a.txt:").is_err());
        assert!(parse_entry_name("Files/a.txt::$DATA").is_err());
        assert!(parse_entry_name("Files:s/a.txt").is_err());
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "",
            "/",
            "/etc/passwd",
            r"\Windows",
            "../x",
            "Files/../../x",
            "Files/./x",
            "C:/Windows",
            "C:",
            "c:x",
            r"C:\x",
            "Files//x",
            "a/\0b",
            "..",
        ] {
            assert!(parse_entry_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_link_target("../Files/x").is_err());
        assert!(parse_link_target("Files/x:s").is_err());
        assert_eq!(parse_link_target("Files/x").unwrap(), r"Files\x");
    }

    #[test]
    fn characters_windows_names_cannot_hold_are_refused() {
        for bad in [
            "a?b",
            "Files/a<b",
            "x>",
            "q\"",
            "p|",
            "*",
            "tab\there",
            "Files/\u{1f}",
        ] {
            let e = parse_entry_name(bad).unwrap_err();
            assert!(e.contains("Windows file names cannot hold"), "{bad:?}: {e}");
        }
        for kept in ["CON", "x.", "sp ", "Files/a b (1)", "Files/élan ✓"] {
            assert!(parse_entry_name(kept).is_ok(), "{kept:?}");
        }
    }

    #[test]
    fn parent_split() {
        assert_eq!(split_parent(r"a\b\c"), (r"a\b", "c"));
        assert_eq!(split_parent("c"), ("", "c"));
    }
}
