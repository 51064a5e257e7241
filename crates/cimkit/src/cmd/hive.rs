//! `cimkit hive`: registry hives (regf): dump, get, set, merge differencing hives, check.
//! A hive can be read from a file or from inside a CIM (`--cim IMAGE`, path inside the image);
//! every command applies the transaction logs (.LOG1/.LOG2) found beside a hive, in memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value as Json};

use super::{open_cim, Outcome};
use crate::output;

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
    /// dump, get: read a damaged hive as far as it is sound; damaged keys and values are
    /// skipped and listed on stderr (the base block and the root key must still be readable).
    #[arg(long)]
    pub lenient: bool,
}

#[derive(clap::Subcommand)]
pub enum HiveCommand {
    /// Print every key and value (or a .reg export with --reg).
    Dump {
        #[command(flatten)]
        source: Source,
        /// Only this key and below (`A\B`).
        #[arg(long, default_value = "")]
        key: String,
        /// regedit .reg format, under this root (e.g. HKEY_LOCAL_MACHINE\SYSTEM).
        #[arg(long, value_name = "ROOT")]
        reg: Option<String>,
        /// One JSON object per key and line: {path, last_written, class, values: [{name, type, data (base64), text}]}.
        #[arg(long)]
        json: bool,
    },
    /// Show one value, or a key's values and subkeys.
    Get {
        #[command(flatten)]
        source: Source,
        /// Key path (`ControlSet001\Control`); "" is the root.
        key: String,
        /// Value name ("" for the default value); omit to list the key.
        value: Option<String>,
        /// Print the value (or the key's values and subkeys) as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Set (or delete) a value and write the hive back (or to --output).
    Set {
        /// Hive file to edit.
        hive: PathBuf,
        /// Key path; missing keys are created.
        key: String,
        /// Value name ("" for the default value).
        name: String,
        /// The data: text for sz/expand_sz, `;`-separated for multi_sz, a number for
        /// dword/qword, hex for binary. Omit with --delete.
        data: Option<String>,
        /// Value type.
        #[arg(long = "type", value_enum, default_value = "sz")]
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
    /// Check a hive file's invariants; exit 1 with the list of problems.
    Check {
        #[command(flatten)]
        source: Source,
        /// Print the result as one JSON object: {hive, ok, problems: [...]}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ValueType {
    Sz,
    ExpandSz,
    MultiSz,
    Dword,
    Qword,
    Binary,
}

fn read_bytes(source: &Source) -> Result<(Vec<u8>, String)> {
    match &source.cim {
        Some(cim_path) => {
            let cim = open_cim(cim_path)?;
            let name = format!("{}:{}", cim_path.display(), source.hive);
            let bytes = read_cim_file(&cim, &source.hive)
                .with_context(|| name.clone())?
                .with_context(|| format!("{name}: not found"))?;
            if source.no_logs {
                return Ok((bytes, name));
            }
            // Windows keeps the logs beside the hive; lookups in a CIM are case-insensitive.
            // The single .LOG of XP / Server 2003 counts only when there is no .LOG1/.LOG2.
            let mut logs = Vec::new();
            for suffixes in [&[".LOG1", ".LOG2"][..], &[".LOG"][..]] {
                for suffix in suffixes {
                    let log_name = format!("{}{suffix}", source.hive);
                    if let Some(log) = read_cim_file(&cim, &log_name)
                        .with_context(|| format!("{}:{log_name}", cim_path.display()))?
                    {
                        logs.push((format!("{}:{log_name}", cim_path.display()), log));
                    }
                }
                if !logs.is_empty() {
                    break;
                }
            }
            Ok((apply_logs(bytes, &name, &logs), name))
        }
        None => Ok((
            read_file(Path::new(&source.hive), source.no_logs)?,
            source.hive.clone(),
        )),
    }
}

/// A hive file's bytes with the transaction logs beside it applied (unless `no_logs`).
fn read_file(path: &Path, no_logs: bool) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if no_logs {
        return Ok(bytes);
    }
    let mut logs = Vec::new();
    for p in regf::log_paths(path) {
        let log = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        logs.push((p.display().to_string(), log));
    }
    Ok(apply_logs(bytes, &path.display().to_string(), &logs))
}

/// A hive file parsed after its logs are applied (unless `no_logs`).
fn open_file(path: &Path, no_logs: bool) -> Result<regf::Hive> {
    let bytes = read_file(path, no_logs)?;
    regf::Hive::parse(&bytes).with_context(|| format!("cannot read hive {}", path.display()))
}

/// The bytes of a file inside a CIM, or None when there is no such file.
fn read_cim_file(cim: &cimfs::Cim, path: &str) -> Result<Option<Vec<u8>>> {
    let mut r = match cim.open_file(path) {
        Ok(r) => r,
        Err(cimfs::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut bytes)?;
    Ok(Some(bytes))
}

/// Applies transaction logs (name, bytes) to a primary hive in memory and says on stderr what
/// happened; the primary is returned as it is when the logs cannot be used. Nothing is written.
fn apply_logs(primary: Vec<u8>, name: &str, logs: &[(String, Vec<u8>)]) -> Vec<u8> {
    if logs.is_empty() {
        return primary;
    }
    let refs: Vec<&[u8]> = logs.iter().map(|(_, b)| b.as_slice()).collect();
    let recovery = match regf::recover(&primary, &refs) {
        Ok(r) => r,
        // Not a primary hive at all: the parser or validator says why.
        Err(_) => return primary,
    };
    if !recovery.was_dirty {
        return primary;
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
        eprintln!(
            "cimkit: {name} is dirty but no log entry applies ({}); reading it as it is",
            names(false)
        );
        return primary;
    }
    let applied = recovery.entries_applied();
    let unused = names(false);
    eprintln!(
        "cimkit: applied {applied} log {} from {} to {name} (in memory; sequence now {}){}",
        if applied == 1 { "entry" } else { "entries" },
        names(true),
        recovery.sequence,
        if unused.is_empty() {
            String::new()
        } else {
            format!("; not used: {unused}")
        }
    );
    recovery.bytes
}

fn load(source: &Source) -> Result<(regf::Hive, String)> {
    let (bytes, name) = read_bytes(source)?;
    let parsed = if source.lenient {
        regf::Hive::parse_lenient(&bytes)
    } else {
        regf::Hive::parse(&bytes)
    };
    let hive = parsed.with_context(|| {
        if source.lenient {
            format!("{name}: not a readable hive")
        } else {
            format!("{name}: not a readable hive (--lenient reads what is sound)")
        }
    })?;
    if source.lenient {
        for note in hive
            .notes
            .iter()
            .filter(|n| !n.starts_with(regf::DIRTY_NOTE))
        {
            eprintln!("cimkit: {name}: {note}");
        }
    }
    Ok((hive, name))
}

fn key_path(s: &str) -> String {
    s.split(['\\', '/'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\\")
}

fn find_key<'h>(hive: &'h regf::Hive, path: &str, name: &str) -> Result<&'h regf::Key> {
    if path.is_empty() {
        return Ok(&hive.root);
    }
    hive.key(path)
        .with_context(|| format!("{name}: key {path:?} not found"))
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
    json!({
        "name": v.name,
        "type": type_name(v.kind),
        "kind": v.kind,
        "data": output::base64(&v.data),
        "text": value_text(v),
        "tombstone": v.tombstone,
    })
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
            if hex.len() & 1 == 1 {
                bail!("binary data {data:?}: odd number of hex digits");
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
    .with_context(|| format!("{s:?} is not a number"))
}

fn parse_number(s: &str) -> Result<u32> {
    u32::try_from(parse_number64(s)?).with_context(|| format!("{s:?} does not fit in a dword"))
}

pub fn run(args: Args) -> Result<Outcome> {
    let mut out = output::stdout();
    let outcome = match args.command {
        HiveCommand::Dump {
            source,
            key,
            reg,
            json,
        } => {
            let (hive, name) = load(&source)?;
            let path = key_path(&key);
            let k = find_key(&hive, &path, &name)?;
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
            } else if path.is_empty() {
                regf::dump(&hive, &mut out)?;
            } else {
                let mut sub = regf::Hive::new();
                sub.root = k.clone();
                sub.minor_version = hive.minor_version;
                writeln!(out, "key \\{path}:")?;
                regf::dump(&sub, &mut out)?;
            }
            Outcome::Ok
        }
        HiveCommand::Get {
            source,
            key,
            value,
            json,
        } => {
            let (hive, name) = load(&source)?;
            let path = key_path(&key);
            let k = find_key(&hive, &path, &name)?;
            match value {
                Some(v) => {
                    let val = k
                        .value(&v)
                        .with_context(|| format!("{name}: key {path:?} has no value {v:?}"))?;
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
            let mut hive = if create && !file.exists() {
                regf::Hive::new()
            } else {
                open_file(&file, no_logs)?
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
                    bail!("{}: key {path:?} has no value {name:?}", file.display());
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
                "{}: merged {} delta(s) onto {}",
                dest.display(),
                deltas.len(),
                base.display()
            )?;
            Outcome::Ok
        }
        HiveCommand::Check { source, json } => {
            let (bytes, name) = read_bytes(&source)?;
            let problems = regf::validate::validate(&bytes);
            if json {
                let list: Vec<Json> = problems
                    .iter()
                    .map(|p| json!({"offset": p.offset, "key": p.key, "message": p.message, "text": p.to_string()}))
                    .collect();
                output::json_line(
                    &mut out,
                    &json!({"hive": name, "ok": list.is_empty(), "problems": list}),
                )?;
            } else if problems.is_empty() {
                writeln!(out, "{name}: OK")?;
            } else {
                for p in &problems {
                    writeln!(out, "{name}: {p}")?;
                }
                writeln!(out, "{name}: {} problem(s) found", problems.len())?;
            }
            if problems.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            }
        }
    };
    out.flush()?;
    Ok(outcome)
}
