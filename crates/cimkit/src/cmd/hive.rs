//! `cimkit hive`: registry hives (regf): dump, get, set, merge differencing hives, check.
//! A hive can be read from a file or from inside a CIM (`--cim IMAGE`, path inside the image);
//! every command applies the transaction logs (.LOG1/.LOG2) found beside a hive, in memory.
//! Key paths are split on `\` only: `/` is an ordinary character of key names. Notes about a
//! hive (logs applied, dirty, damaged parts skipped) go to stderr, once each.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value as Json};

use super::{open_cim, Outcome};
use crate::output::{self, quote};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: HiveCommand,
}

/// Where the hive comes from.
#[derive(clap::Args)]
pub struct Source {
    /// Hive file; with --cim, a path inside the image (e.g. Hives\SYSTEM_BASE).
    pub hive: String,
    /// Read the hive from inside this CIM.
    #[arg(long)]
    pub cim: Option<PathBuf>,
    /// Read the primary file as it is, without applying the transaction logs (HIVE.LOG1,
    /// HIVE.LOG2) found beside it.
    #[arg(long)]
    pub no_logs: bool,
}

/// `--lenient` of the commands that read the key tree.
#[derive(clap::Args)]
pub struct Lenient {
    /// Read a damaged hive as far as it is sound; damaged keys and values are skipped and
    /// named on stderr (the base block and the root key must still be readable).
    #[arg(long)]
    pub lenient: bool,
}

#[derive(clap::Subcommand)]
pub enum HiveCommand {
    /// Print every key and value (or a .reg export with --reg).
    Dump {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        lenient: Lenient,
        /// Only this key and below (`A\B`; only `\` separates, `/` is part of a name).
        #[arg(long, default_value = "")]
        key: String,
        /// regedit .reg format, under this root (e.g. HKEY_LOCAL_MACHINE\SYSTEM). The text is
        /// UTF-8 without a byte-order mark, as hivexregedit writes it; regedit writes these
        /// files as UTF-16LE, so for regedit convert one whose names or strings are not ASCII
        /// (`iconv -f UTF-8 -t UTF-16`).
        #[arg(long, value_name = "ROOT")]
        reg: Option<String>,
        /// One JSON object per key and line: {path, last_written, class, values: [{name, type, data (base64), text, and strings for REG_MULTI_SZ}]}.
        #[arg(long)]
        json: bool,
    },
    /// Show one value, or a key's values and subkeys.
    Get {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        lenient: Lenient,
        /// Key path (`ControlSet001\Control`; only `\` separates, `/` is part of a name); ""
        /// is the root.
        key: String,
        /// Value name ("" for the default value); omit to list the key.
        #[arg(value_name = "NAME")]
        value: Option<String>,
        /// Print the value (or the key's values and subkeys) as one JSON object: exact where
        /// the text is not (a REG_MULTI_SZ is shown as its strings joined by `;`, which a
        /// string may itself hold; --json lists them).
        #[arg(long)]
        json: bool,
    },
    /// Set (or delete) a value and write the hive back (or to --output).
    Set {
        /// Hive file to edit.
        hive: PathBuf,
        /// Key path (only `\` separates, `/` is part of a name); missing keys are created.
        key: String,
        /// Value name ("" for the default value).
        #[arg(value_name = "NAME")]
        name: String,
        /// The data: text for sz and expand-sz; for multi-sz the strings separated by `;`
        /// (`a;b;c`; "" is an empty list; an empty string inside the list is refused, as it
        /// would end the list, and a string cannot hold `;`); a number (decimal or 0x…) for
        /// dword and qword; hex digits for binary (`de ad`, `de,ad` or `dead`). Omit with
        /// --delete.
        data: Option<String>,
        /// Value type (expand_sz and multi_sz are accepted too).
        #[arg(long = "type", value_enum, value_name = "TYPE", default_value = "sz")]
        kind: ValueType,
        /// Delete the value instead.
        #[arg(long, conflicts_with = "data")]
        delete: bool,
        /// Write the result here instead of over the input.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Start from a new empty hive when the file does not exist.
        #[arg(long)]
        create: bool,
        /// Edit the primary file as it is, without first applying the transaction logs
        /// (HIVE.LOG1, HIVE.LOG2) found beside it.
        #[arg(long)]
        no_logs: bool,
    },
    /// Merge differencing hives onto a base (like ORMergeHives) and save the result.
    Merge {
        /// The base hive.
        base: PathBuf,
        /// Differencing hives, lowest first.
        #[arg(required = true)]
        deltas: Vec<PathBuf>,
        /// The merged hive to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Read each hive file as it is, without applying the transaction logs found beside it.
        #[arg(long)]
        no_logs: bool,
    },
    /// Check a hive file: exit 0 when Windows can rely on it, else exit 1 with the problems,
    /// damage first (at most 1000 listed; the count says how many there are in all).
    Check {
        #[command(flatten)]
        source: Source,
        /// Also require the compact layout that ORSaveHive and `hive set`/`merge` write (no
        /// slack: free space only at bin ends, minimal cells, every cell used once, exact
        /// "largest name/data" fields, no bytes after the bins, a clean file). Live Windows
        /// hives break these rules without being damaged.
        #[arg(long)]
        compact: bool,
        /// Print the result as one JSON object: {hive, ok, total, truncated, problems:
        /// [{offset, key, message, compact, text}]} (key is null when the problem is not
        /// about a key, "" for the root key).
        #[arg(long)]
        json: bool,
    },
}

/// The value types `hive set` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ValueType {
    Sz,
    #[value(alias = "expand_sz")]
    ExpandSz,
    #[value(alias = "multi_sz")]
    MultiSz,
    Dword,
    Qword,
    Binary,
}

/// A hive file's bytes (logs applied), its name for messages, and whether stderr already said
/// the file is dirty (so the parser's "dirty hive" note is not repeated).
struct Bytes {
    bytes: Vec<u8>,
    name: String,
    dirty_told: bool,
}

fn read_bytes(source: &Source) -> Result<Bytes> {
    match &source.cim {
        Some(cim_path) => {
            let cim = open_cim(cim_path)?;
            let asked = format!("{}:{}", cim_path.display(), source.hive);
            let (stored, bytes) = super::read_cim_file(&cim, &source.hive)
                .with_context(|| asked.clone())?
                .with_context(|| format!("{asked}: not found"))?;
            let name = format!("{}:{stored}", cim_path.display());
            // Logs sit beside a hive file, not beside one of its streams.
            if source.no_logs || stored.contains(':') {
                return Ok(Bytes {
                    bytes,
                    name,
                    dirty_told: false,
                });
            }
            // Windows keeps the logs beside the hive; lookups in a CIM are case-insensitive.
            // The single .LOG of XP / Server 2003 counts only when there is no .LOG1/.LOG2.
            let mut logs = Vec::new();
            for suffixes in [&[".LOG1", ".LOG2"][..], &[".LOG"][..]] {
                for suffix in suffixes {
                    let log_name = format!("{stored}{suffix}");
                    if let Some((log_stored, log)) = super::read_cim_file(&cim, &log_name)
                        .with_context(|| format!("{}:{log_name}", cim_path.display()))?
                    {
                        logs.push((format!("{}:{log_stored}", cim_path.display()), log));
                    }
                }
                if !logs.is_empty() {
                    break;
                }
            }
            let (bytes, dirty_told) = apply_logs(bytes, &name, &logs);
            Ok(Bytes {
                bytes,
                name,
                dirty_told,
            })
        }
        None => read_file(Path::new(&source.hive), source.no_logs),
    }
}

/// A hive file's bytes with the transaction logs beside it applied (unless `no_logs`).
fn read_file(path: &Path, no_logs: bool) -> Result<Bytes> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
    if no_logs {
        return Ok(Bytes {
            bytes,
            name,
            dirty_told: false,
        });
    }
    let mut logs = Vec::new();
    for p in regf::log_paths(path) {
        let log = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        logs.push((p.display().to_string(), log));
    }
    let (bytes, dirty_told) = apply_logs(bytes, &name, &logs);
    Ok(Bytes {
        bytes,
        name,
        dirty_told,
    })
}

/// A hive file parsed after its logs are applied (unless `no_logs`); its notes are said on
/// stderr.
fn open_file(path: &Path, no_logs: bool) -> Result<regf::Hive> {
    let read = read_file(path, no_logs)?;
    let mut hive = regf::Hive::parse(&read.bytes)
        .with_context(|| format!("cannot read hive {}", read.name))?;
    tell_notes(&mut hive, &read);
    Ok(hive)
}

/// Says the notes of a parsed hive on stderr, once each, and takes them out of the hive (so a
/// dump does not print them again on stdout). A "dirty hive" note is left out when the log
/// replay already said why the file is read as it is.
fn tell_notes(hive: &mut regf::Hive, read: &Bytes) {
    for note in std::mem::take(&mut hive.notes) {
        if read.dirty_told && note.starts_with(regf::DIRTY_NOTE) {
            continue;
        }
        output::note(format_args!("{}: {note}", read.name));
    }
}

/// Applies transaction logs (name, bytes) to a primary hive in memory and says on stderr what
/// happened; the primary is returned as it is when the logs cannot be used. Nothing is written.
/// The flag is true when stderr was told about a dirty file.
fn apply_logs(primary: Vec<u8>, name: &str, logs: &[(String, Vec<u8>)]) -> (Vec<u8>, bool) {
    if logs.is_empty() {
        return (primary, false);
    }
    let refs: Vec<&[u8]> = logs.iter().map(|(_, b)| b.as_slice()).collect();
    let recovery = match regf::recover(&primary, &refs) {
        Ok(r) => r,
        // Not a primary hive at all: the parser or validator says why.
        Err(_) => return (primary, false),
    };
    if !recovery.was_dirty {
        return (primary, false);
    }
    let names = |applied: bool| {
        logs.iter()
            .zip(&recovery.logs)
            .filter(|(_, r)| (r.entries_applied > 0) == applied)
            .map(|((n, _), r)| {
                if applied {
                    n.clone()
                } else {
                    format!("{n} ({})", r.note)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if recovery.entries_applied() == 0 {
        output::note(format_args!(
            "{name} is dirty but no log entry applies ({}); reading it as it is",
            names(false)
        ));
        return (primary, true);
    }
    let applied = recovery.entries_applied();
    let unused = names(false);
    output::note(format_args!(
        "applied {} from {} to {name} (in memory; sequence now {}){}",
        output::count_as(applied, "log entry", "log entries"),
        names(true),
        recovery.sequence,
        if unused.is_empty() {
            String::new()
        } else {
            format!("; not used: {unused}")
        }
    ));
    (recovery.bytes, true)
}

/// Reads and parses the hive of `source` and says its notes on stderr.
fn load(source: &Source, lenient: bool) -> Result<(regf::Hive, String)> {
    let read = read_bytes(source)?;
    let parsed = if lenient {
        regf::Hive::parse_lenient(&read.bytes)
    } else {
        regf::Hive::parse(&read.bytes)
    };
    let mut hive = parsed.with_context(|| {
        if lenient {
            format!("{}: not a readable hive", read.name)
        } else {
            format!(
                "{}: not a readable hive (--lenient reads what is sound)",
                read.name
            )
        }
    })?;
    tell_notes(&mut hive, &read);
    Ok((hive, read.name))
}

/// A key path as the library takes it: names separated by one `\` (only `\` separates; `/`
/// is an ordinary character of key names), no empty names.
fn key_path(s: &str) -> String {
    s.split('\\')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\\")
}

/// The key at `path` (as [`key_path`] gives it) and its path spelled as the hive spells its
/// names (lookups ignore case).
fn find_key<'h>(hive: &'h regf::Hive, path: &str, name: &str) -> Result<(&'h regf::Key, String)> {
    let mut key = &hive.root;
    let mut names = Vec::new();
    for part in path.split('\\').filter(|p| !p.is_empty()) {
        key = key
            .subkey(part)
            .with_context(|| format!("{name}: key {} not found", quote(path)))?;
        names.push(key.name.as_str());
    }
    Ok((key, names.join("\\")))
}

fn type_name(kind: u32) -> String {
    regf::format::type_name(kind)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind:#x}"))
}

/// Data as text when the type has a text form.
fn value_text(v: &regf::Value) -> Option<String> {
    match v.kind {
        regf::REG_SZ | regf::REG_EXPAND_SZ | regf::REG_LINK => v.as_string(),
        regf::REG_MULTI_SZ => v.as_multi_string().map(|l| l.join(";")),
        regf::REG_DWORD | regf::REG_DWORD_BIG_ENDIAN => v.as_u32().map(|n| format!("{n} ({n:#x})")),
        regf::REG_QWORD => v.as_u64().map(|n| format!("{n} ({n:#x})")),
        _ => None,
    }
}

fn value_json(v: &regf::Value) -> Json {
    let mut j = json!({
        "name": v.name,
        "type": type_name(v.kind),
        "kind": v.kind,
        "data": output::base64(&v.data),
        "text": value_text(v),
        "tombstone": v.tombstone,
    });
    // The strings one by one: the text joins them with `;`, which a string may hold.
    if let Some(strings) = v.as_multi_string() {
        j["strings"] = json!(strings);
    }
    j
}

fn key_json(k: &regf::Key, path: &str) -> Json {
    json!({
        "path": path,
        "last_written": k.last_written,
        "class": k.class_name(),
        "values": k.values.iter().map(value_json).collect::<Vec<_>>(),
        "subkeys": k.subkeys.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    })
}

/// One JSON line per key, `k` and every key below it.
fn dump_json(out: &mut dyn Write, k: &regf::Key, path: &str) -> Result<()> {
    k.walk(&mut path.to_string(), &mut |key, p| {
        output::json_line(out, &key_json(key, p))
    })?;
    Ok(())
}

fn parse_data(kind: ValueType, data: &str) -> Result<(u32, Vec<u8>)> {
    Ok(match kind {
        ValueType::Sz => (regf::REG_SZ, regf::encode_sz(data)),
        ValueType::ExpandSz => (regf::REG_EXPAND_SZ, regf::encode_sz(data)),
        ValueType::MultiSz => {
            let items: Vec<&str> = if data.is_empty() {
                Vec::new()
            } else {
                data.split(';').collect()
            };
            // An empty string ends a REG_MULTI_SZ: readers would stop there and lose the rest.
            if let Some(i) = items.iter().position(|s| s.is_empty()) {
                bail!(
                    "multi-sz data {}: string {} of {} is empty; REG_MULTI_SZ cannot hold an \
                     empty string (it ends the list), so drop the extra `;`",
                    quote(data),
                    i + 1,
                    items.len()
                );
            }
            (regf::REG_MULTI_SZ, regf::encode_multi_sz(&items))
        }
        ValueType::Dword => (regf::REG_DWORD, parse_number(data)?.to_le_bytes().to_vec()),
        ValueType::Qword => (
            regf::REG_QWORD,
            parse_number64(data)?.to_le_bytes().to_vec(),
        ),
        ValueType::Binary => {
            let hex: String = data
                .chars()
                .filter(|c| !c.is_whitespace() && *c != ',')
                .collect();
            if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
                bail!(
                    "binary data {}: {} is not a hex digit (bytes as hex pairs, optionally \
                     separated by spaces or commas: \"de ad\", \"de,ad\", \"dead\")",
                    quote(data),
                    quote(&c.to_string())
                );
            }
            if hex.len() & 1 == 1 {
                bail!("binary data {}: odd number of hex digits", quote(data));
            }
            let mut bytes = Vec::with_capacity(hex.len() / 2);
            for i in (0..hex.len()).step_by(2) {
                let pair = hex.get(i..i + 2).unwrap_or_default();
                bytes.push(
                    u8::from_str_radix(pair, 16).with_context(|| format!("bad hex {pair:?}"))?,
                );
            }
            (regf::REG_BINARY, bytes)
        }
    })
}

fn parse_number64(s: &str) -> Result<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .with_context(|| format!("{} is not a number", quote(s)))
}

fn parse_number(s: &str) -> Result<u32> {
    u32::try_from(parse_number64(s)?)
        .with_context(|| format!("{} does not fit in a dword", quote(s)))
}

pub fn run(args: Args) -> Result<Outcome> {
    let mut out = output::stdout();
    let outcome = match args.command {
        HiveCommand::Dump {
            source,
            lenient,
            key,
            reg,
            json,
        } => {
            let (hive, name) = load(&source, lenient.lenient)?;
            let (k, path) = find_key(&hive, &key_path(&key), &name)?;
            if json {
                dump_json(&mut out, k, &path)?;
            } else if let Some(root) = reg {
                let mut sub = regf::Hive::new();
                sub.root = k.clone();
                let prefix = if path.is_empty() {
                    root
                } else {
                    format!("{root}\\{path}")
                };
                regf::export_reg(&sub, &prefix, &mut out)?;
            } else {
                regf::dump_from(&hive, &path, k, &mut out)?;
            }
            Outcome::Ok
        }
        HiveCommand::Get {
            source,
            lenient,
            key,
            value,
            json,
        } => {
            let (hive, name) = load(&source, lenient.lenient)?;
            let (k, path) = find_key(&hive, &key_path(&key), &name)?;
            match value {
                Some(v) => {
                    let val = k.value(&v).with_context(|| {
                        format!("{name}: key {} has no value {}", quote(&path), quote(&v))
                    })?;
                    if json {
                        output::json_line(&mut out, &value_json(val))?;
                    } else {
                        match value_text(val) {
                            Some(t) => writeln!(out, "{t}")?,
                            None => writeln!(out, "{}", output::hex(&val.data))?,
                        }
                    }
                }
                None if json => output::json_line(&mut out, &key_json(k, &path))?,
                None => {
                    for v in &k.values {
                        let shown = value_text(v).unwrap_or_else(|| output::hex(&v.data));
                        let vname = if v.name.is_empty() {
                            "(default)"
                        } else {
                            v.name.as_str()
                        };
                        writeln!(out, "{vname}\t{}\t{shown}", type_name(v.kind))?;
                    }
                    for s in &k.subkeys {
                        writeln!(out, "{}\\", s.name)?;
                    }
                }
            }
            Outcome::Ok
        }
        HiveCommand::Set {
            hive: file,
            key,
            name,
            data,
            kind,
            delete,
            output: dest,
            create,
            no_logs,
        } => {
            let missing = match std::fs::metadata(&file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(e),
                _ => None,
            };
            let mut hive = match missing {
                Some(_) if create => regf::Hive::new(),
                Some(e) => bail!(
                    "cannot read {}: {e} (use --create to start a new hive)",
                    file.display()
                ),
                None => open_file(&file, no_logs)?,
            };
            let path = key_path(&key);
            if delete {
                let k = if path.is_empty() {
                    Some(&mut hive.root)
                } else {
                    hive.key_mut(&path)
                };
                let removed = k.map(|k| k.delete_value(&name)).unwrap_or(false);
                if !removed {
                    bail!(
                        "{}: key {} has no value {}",
                        file.display(),
                        quote(&path),
                        quote(&name)
                    );
                }
            } else {
                let data = data.context("give the data to set (or --delete)")?;
                let (kind, bytes) = parse_data(kind, &data)?;
                let k = if path.is_empty() {
                    &mut hive.root
                } else {
                    hive.create_key(&path)
                };
                k.set_value(&name, kind, bytes);
            }
            let dest = dest.unwrap_or(file);
            hive.save(&dest)
                .with_context(|| format!("cannot write hive {}", dest.display()))?;
            Outcome::Ok
        }
        HiveCommand::Merge {
            base,
            deltas,
            output: dest,
            no_logs,
        } => {
            let base_hive = open_file(&base, no_logs)?;
            let mut loaded = Vec::with_capacity(deltas.len());
            for d in &deltas {
                loaded.push(open_file(d, no_logs)?);
            }
            let refs: Vec<&regf::Hive> = loaded.iter().collect();
            let merged = regf::merge_all(&base_hive, &refs).context("cannot merge the hives")?;
            merged
                .save(&dest)
                .with_context(|| format!("cannot write hive {}", dest.display()))?;
            writeln!(
                out,
                "{}: merged {} onto {}",
                dest.display(),
                output::count(deltas.len(), "delta"),
                base.display()
            )?;
            Outcome::Ok
        }
        HiveCommand::Check {
            source,
            compact,
            json,
        } => {
            let read = read_bytes(&source)?;
            let name = &read.name;
            let level = if compact {
                regf::validate::Level::Compact
            } else {
                regf::validate::Level::Windows
            };
            let report = regf::validate::check(&read.bytes, level);
            for note in &report.notes {
                if !(read.dirty_told && note.starts_with(regf::DIRTY_NOTE)) {
                    output::note(format_args!("{name}: {note}"));
                }
            }
            if json {
                let list: Vec<Json> = report
                    .problems
                    .iter()
                    .map(|p| {
                        json!({
                            "offset": p.offset,
                            "key": p.key,
                            "message": p.message,
                            "compact": p.compact,
                            "text": p.to_string(),
                        })
                    })
                    .collect();
                output::json_line(
                    &mut out,
                    &json!({
                        "hive": name,
                        "ok": report.is_ok(),
                        "total": report.total,
                        "truncated": report.truncated(),
                        "problems": list,
                        "notes": report.notes,
                    }),
                )?;
            } else if report.is_ok() {
                writeln!(out, "{name}: OK")?;
            } else {
                for p in &report.problems {
                    writeln!(out, "{name}: {p}")?;
                }
                if report.truncated() {
                    writeln!(
                        out,
                        "{name}: … and {} more not listed",
                        report.total - report.problems.len()
                    )?;
                }
                writeln!(
                    out,
                    "{name}: {} found",
                    output::count(report.total, "problem")
                )?;
            }
            if report.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            }
        }
    };
    out.flush()?;
    Ok(outcome)
}
