//! Rendering shared by the read commands: FILETIMEs, attribute letters, sizes, entry types and
//! the JSON object that describes one entry (`ls --json`, `stat --json`, extract's sidecar).

use std::io::{self, Read, Write};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// FILETIME ticks (100 ns) between 1601-01-01 and 1970-01-01.
const UNIX_EPOCH_FILETIME: u64 = 116_444_736_000_000_000;

pub const IO_REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;

/// True when the error is a write to a closed pipe (`cimkit ls | head`): not worth reporting.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes joined by ": ", leaving out of each cause what the message already
/// says (library errors often quote their source in their own text, and name the file and path
/// the context named) and a context that the next cause repeats at its start.
pub fn error_message(e: &anyhow::Error) -> String {
    let texts: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = String::new();
    for (i, text) in texts.iter().enumerate() {
        if texts
            .get(i + 1)
            .is_some_and(|next| next.starts_with(text.as_str()))
        {
            continue;
        }
        let text = unsaid(&out, text);
        if text.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    out
}

/// What a cause's text adds to what `out` says: nothing when `out` ends with it (or with its
/// reason); else the text without the leading places (`image: path: `) that `out` already
/// names, however spelled (quoted with doubled backslashes, `/` for `\`, a leading `\`).
fn unsaid<'a>(out: &str, text: &'a str) -> &'a str {
    if out.ends_with(text) {
        return "";
    }
    let spelled = |s: &str| s.replace("\\\\", "\\").replace('/', "\\");
    let said = spelled(out);
    let mut rest = text;
    while let Some((place, reason)) = rest.split_once(": ") {
        // Only what looks like a file or image path counts as a place.
        let place = spelled(place);
        let place = place.trim_start_matches('\\');
        // A layer folder is named "layer DIR" (DIR may be a bare id such as `2`).
        let is_path = place.contains(['\\', '.']) || place.starts_with("layer ");
        if reason.is_empty() || !is_path || !names_whole(&said, place) {
            break;
        }
        rest = reason;
    }
    if out.ends_with(rest) {
        ""
    } else {
        rest
    }
}

/// Whether `text` names `place` as a whole: not as part of a longer name (`/h/SYSTEM` in
/// `/h/SYSTEM.LOG1`) nor as a folder of another path (`/a/b` in `/a/b/c`).
fn names_whole(text: &str, place: &str) -> bool {
    let name_char = |c: char| c.is_alphanumeric() || "._-$~".contains(c);
    text.match_indices(place).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + place.len()..].chars().next();
        !before.is_some_and(name_char) && !after.is_some_and(|c| name_char(c) || c == '\\')
    })
}

pub use upcase::shown;

/// `n` and a noun, plural (with an `s`) unless `n` is 1 (`1 layer`, `3 layers`).
pub fn count(n: impl TryInto<u64>, noun: &str) -> String {
    let n = n.try_into().unwrap_or(u64::MAX);
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `n` and a noun whose plural is not `noun` + `s` (`1 entry`, `3 entries`).
pub fn count_as(n: impl TryInto<u64>, one: &str, many: &str) -> String {
    let n = n.try_into().unwrap_or(u64::MAX);
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a tree holds, as du, extract and export say it: regular files (each counted once, with
/// their data), directories, symlinks (symlinks and mount points) and hard links (a file's
/// further names).
pub fn tree_counts(files: u64, data: u64, dirs: u64, symlinks: u64, hard_links: u64) -> String {
    format!(
        "{} ({} of data), {}, {}, {} (further names of those files)",
        count(files, "regular file"),
        human_size(data),
        count_as(dirs, "directory", "directories"),
        count(symlinks, "symlink"),
        count(hard_links, "hard link"),
    )
}

/// Says a note for people on stderr, as `cimkit: note: …` (what a command prints on stdout is
/// its result; notes are beside it).
pub fn note(text: impl std::fmt::Display) {
    eprintln!("cimkit: note: {text}");
}

pub use upcase::quote;

/// Where output bound for a path goes: `write_to` while it is written, then renamed to
/// `rename_to` once complete (when set).
pub struct OutputFile {
    pub write_to: std::path::PathBuf,
    pub rename_to: Option<std::path::PathBuf>,
}

impl OutputFile {
    /// Creates the file to write; one that will replace a file gets that file's permissions
    /// (and, on Unix, its owner where allowed), so replacing it changes only its content.
    pub fn create(&self) -> io::Result<std::fs::File> {
        let file = std::fs::File::create(&self.write_to)?;
        if let Some(old) = self
            .rename_to
            .as_ref()
            .and_then(|d| std::fs::metadata(d).ok())
        {
            file.set_permissions(old.permissions())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt as _;
                // Only root may give a file away; anyone else keeps owning what they write.
                let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
            }
        }
        Ok(file)
    }
}

/// Whether the file behind `m` has other names (hard links) that a replacement would not reach.
fn has_other_names(m: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        m.nlink() > 1
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        false
    }
}

/// How to write output bound for `path` so that a failed run never clobbers a file already
/// there: an absent path or a regular file is written beside it and renamed over it (through a
/// symlink, beside and over its target); anything else (a FIFO, a device such as /dev/null, a
/// dangling symlink, a file with hard links) is written in place, as a shell redirection would.
pub fn output_file(path: &std::path::Path) -> OutputFile {
    let direct = || OutputFile {
        write_to: path.to_path_buf(),
        rename_to: None,
    };
    let dest = match std::fs::symlink_metadata(path) {
        Err(_) => path.to_path_buf(),
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(target)
                if std::fs::metadata(&target)
                    .is_ok_and(|t| t.is_file() && !has_other_names(&t)) =>
            {
                target
            }
            _ => return direct(),
        },
        Ok(m) if m.is_file() && !has_other_names(&m) => path.to_path_buf(),
        Ok(_) => return direct(),
    };
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".cimkit-partial");
    OutputFile {
        write_to: dest.with_file_name(name),
        rename_to: Some(dest),
    }
}

/// Buffered stdout for line-by-line output.
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::new(io::stdout().lock())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A FILETIME as UTC `YYYY-MM-DD HH:MM:SS` (with 7 fractional digits when `precise`); `-` for 0.
pub fn filetime(ft: u64, precise: bool) -> String {
    if ft == 0 {
        return "-".into();
    }
    let ticks = i128::from(ft) - i128::from(UNIX_EPOCH_FILETIME);
    let secs = ticks.div_euclid(10_000_000) as i64;
    let frac = ticks.rem_euclid(10_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let base = format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if precise {
        format!("{base}.{frac:07}Z")
    } else {
        base
    }
}

/// Named FILE_ATTRIBUTE_* bits, in bit order (Win32 fileapi.h).
const ATTRIBUTE_NAMES: &[(u32, &str)] = &[
    (0x1, "READONLY"),
    (0x2, "HIDDEN"),
    (0x4, "SYSTEM"),
    (0x10, "DIRECTORY"),
    (0x20, "ARCHIVE"),
    (0x40, "DEVICE"),
    (0x80, "NORMAL"),
    (0x100, "TEMPORARY"),
    (0x200, "SPARSE_FILE"),
    (0x400, "REPARSE_POINT"),
    (0x800, "COMPRESSED"),
    (0x1000, "OFFLINE"),
    (0x2000, "NOT_CONTENT_INDEXED"),
    (0x4000, "ENCRYPTED"),
    (0x8000, "INTEGRITY_STREAM"),
    (0x20000, "NO_SCRUB_DATA"),
];

/// Attribute bits as `READONLY|ARCHIVE`, unknown bits in hex.
pub fn attribute_names(attributes: u32) -> String {
    let mut names = Vec::new();
    let mut rest = attributes;
    for &(bit, name) in ATTRIBUTE_NAMES {
        if attributes & bit != 0 {
            names.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    if names.is_empty() {
        "-".into()
    } else {
        names.join("|")
    }
}

/// PowerShell-style mode letters: d(irectory) a(rchive) r(eadonly) h(idden) s(ystem) l(ink).
pub fn mode_letters(attributes: u32) -> String {
    [
        (0x10, 'd'),
        (0x20, 'a'),
        (0x1, 'r'),
        (0x2, 'h'),
        (0x4, 's'),
        (0x400, 'l'),
    ]
    .iter()
    .map(|&(bit, c)| if attributes & bit != 0 { c } else { '-' })
    .collect()
}

/// What an entry is, as the JSON `type` field says it.
pub fn entry_type(info: &cimfs::FileInfo) -> &'static str {
    if !info.reparse_data.is_empty() || info.reparse_tag != 0 {
        if info.reparse_tag == IO_REPARSE_TAG_SYMLINK {
            "symlink"
        } else {
            "reparse"
        }
    } else if info.is_directory {
        "dir"
    } else {
        "file"
    }
}

/// The link target of a symlink or mount point, when the reparse data decodes.
pub fn link_target(info: &cimfs::FileInfo) -> Option<String> {
    if info.reparse_data.is_empty() {
        return None;
    }
    wclayer::backuptar::decode_reparse_point(&info.reparse_data)
        .ok()
        .map(|rp| rp.target)
}

/// Owner and group SIDs (`S-1-5-18`) of a self-relative security descriptor, when present.
pub fn sd_owner_group(sd: &[u8]) -> (Option<String>, Option<String>) {
    let sid_at = |field: usize| -> Option<String> {
        let off = u32::from_le_bytes(sd.get(field..field + 4)?.try_into().ok()?) as usize;
        if off == 0 {
            return None;
        }
        wclayer::backuptar::sid_to_string(sd.get(off..)?)
    };
    (sid_at(4), sid_at(8))
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_or_null(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        Value::String(base64(bytes))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// sha256 of everything `r` yields, as hex.
pub fn sha256_of(mut r: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&hasher.finalize()))
}

/// The JSON description of one entry. Hashes the data and streams when `hash` is set.
pub fn entry_json(
    cim: &cimfs::Cim,
    path: &str,
    info: &cimfs::FileInfo,
    hash: bool,
) -> anyhow::Result<Value> {
    use anyhow::Context as _;
    let kind = entry_type(info);
    // Files only: a symlink or junction has no data of its own (null, whichever kind it is).
    let sha256 = if hash && !info.is_directory && link_target(info).is_none() {
        let r = cim
            .open_id(info.file_id, None)
            .with_context(|| format!("{}: {path}", cim.path().display()))?;
        Value::String(sha256_of(r).with_context(|| format!("{}: {path}", cim.path().display()))?)
    } else {
        Value::Null
    };
    // Directories and reparse points can carry alternate streams too.
    let mut streams = Vec::new();
    for s in cim
        .streams_id(info.file_id)
        .with_context(|| format!("{}: {path}: streams", cim.path().display()))?
    {
        let digest = if hash {
            let r = cim
                .open_id(info.file_id, Some(&s.name))
                .with_context(|| format!("{}: {path}:{}", cim.path().display(), s.name))?;
            Value::String(
                sha256_of(r)
                    .with_context(|| format!("{}: {path}:{}", cim.path().display(), s.name))?,
            )
        } else {
            Value::Null
        };
        streams.push(json!({"name": s.name, "size": s.size, "sha256": digest}));
    }
    Ok(json!({
        "path": path,
        "type": kind,
        "attributes": info.attributes,
        "size": info.size,
        "creation_time": info.creation_time,
        "last_write_time": info.last_write_time,
        "change_time": info.change_time,
        "last_access_time": info.last_access_time,
        "file_id": info.file_id,
        "sd": base64_or_null(&info.security_descriptor),
        "ea": base64_or_null(&info.extended_attributes),
        "reparse": base64_or_null(&info.reparse_data),
        "link_target": link_target(info),
        "sha256": sha256,
        "streams": streams,
    }))
}

/// Writes one JSON value as a line.
pub fn json_line(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}

/// Bytes in binary units (`1.5 MiB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS.get(unit).copied().unwrap_or("PiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_that_repeat_the_message_are_left_out() {
        let inner = anyhow::anyhow!(
            "/s/1.cim: UtilityVM\\SOFTWARE: parent directory \\UtilityVM does not exist"
        );
        let outer = inner.context(
            "CIM /s/1.cim: add \"UtilityVM\\\\SOFTWARE\": parent directory \\UtilityVM does not exist",
        );
        assert_eq!(
            error_message(&outer),
            "CIM /s/1.cim: add \"UtilityVM\\\\SOFTWARE\": parent directory \\UtilityVM does not exist"
        );
        // A cause naming a place the message does not is kept.
        let inner = anyhow::anyhow!("/other.cim: x: gone");
        let outer = inner.context("CIM /s/1.cim: add \"x\": gone");
        assert_eq!(
            error_message(&outer),
            "CIM /s/1.cim: add \"x\": gone: /other.cim: x: gone"
        );
        // The places of a cause spelled otherwise than in the context: only the reason is new.
        let inner = anyhow::anyhow!("/s/1.cim: Files\\h\\bcd:nope: not found");
        let outer = inner.context("/s/1.cim:Files/h/bcd:nope");
        assert_eq!(
            error_message(&outer),
            "/s/1.cim:Files/h/bcd:nope: not found"
        );
        let inner = anyhow::anyhow!("/s/1.cim: \\Files\\h\\x: not a directory");
        let outer = inner.context("/s/1.cim: Files\\h\\x");
        assert_eq!(
            error_message(&outer),
            "/s/1.cim: Files\\h\\x: not a directory"
        );
        // A name inside a longer one, or a folder of the path named, is another place.
        let inner = anyhow::anyhow!("/h/SYSTEM: base block checksum is wrong");
        let outer = inner.context("cannot apply log /h/SYSTEM.LOG1");
        assert_eq!(
            error_message(&outer),
            "cannot apply log /h/SYSTEM.LOG1: /h/SYSTEM: base block checksum is wrong"
        );
        let inner = anyhow::anyhow!("/a/b: permission denied");
        let outer = inner.context("cannot create /a/b/c");
        assert_eq!(
            error_message(&outer),
            "cannot create /a/b/c: /a/b: permission denied"
        );
    }

    #[test]
    fn filetimes_render_in_utc() {
        assert_eq!(filetime(0, false), "-");
        assert_eq!(filetime(UNIX_EPOCH_FILETIME, false), "1970-01-01 00:00:00");
        // 2021-03-19 12:34:56.5 UTC = unix 1616157296.5
        let ft = UNIX_EPOCH_FILETIME + 16_161_572_965_000_000;
        assert_eq!(filetime(ft, true), "2021-03-19 12:34:56.5000000Z");
        assert_eq!(filetime(1, false), "1601-01-01 00:00:00");
    }

    #[test]
    fn error_causes_are_not_repeated() {
        #[derive(Debug)]
        struct Outer {
            source: io::Error,
        }
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "reading the layer tar: {}", self.source)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let e = anyhow::Error::new(Outer {
            source: io::Error::other("bad checksum"),
        })
        .context("cannot import layer 1");
        assert_eq!(
            error_message(&e),
            "cannot import layer 1: reading the layer tar: bad checksum"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_message(&plain), "outer: inner");
    }

    #[test]
    fn attributes_render() {
        assert_eq!(attribute_names(0x21), "READONLY|ARCHIVE");
        assert_eq!(attribute_names(0x10_0000 | 0x10), "DIRECTORY|0x100000");
        assert_eq!(mode_letters(0x10 | 0x400), "d----l");
        assert_eq!(human_size(1536), "1.5 KiB");
    }

    #[test]
    fn sd_owner_and_group() {
        let mut sd = vec![
            1, 0, 4, 0x80, 20, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        sd.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]);
        sd.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 32, 2, 0, 0]);
        assert_eq!(
            sd_owner_group(&sd),
            (Some("S-1-5-18".into()), Some("S-1-5-32-544".into()))
        );
        assert_eq!(sd_owner_group(&sd[..10]), (None, None));
        assert_eq!(sd_owner_group(&[]), (None, None));
    }
}
