//! `cimkit diff`: paths added, removed or changed between two CIMs (data compared byte by byte,
//! metadata field by field); exit 1 when they differ.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{open_cim, Outcome};
use crate::output;
use crate::walk;

#[derive(clap::Args)]
#[command(
    after_help = "Output lines: `+ PATH` added in CIM_B, `- PATH` removed, `M PATH (what)` \
changed, where what lists: type, data, size, attributes, times, sd, ea, reparse, streams, links \
(hard-link grouping). Paths compare case-insensitively; the root directory itself is not compared."
)]
pub struct Args {
    /// The old image.
    pub cim_a: PathBuf,
    /// The new image.
    pub cim_b: PathBuf,
    /// Do not compare the four timestamps.
    #[arg(long)]
    pub ignore_times: bool,
    /// One JSON object per difference and line: {path, change: added|removed|changed, what}.
    #[arg(long)]
    pub json: bool,
}

struct Side {
    path: String,
    info: cimfs::FileInfo,
    /// All paths (lowercased) sharing this file id, sorted: the hard-link group.
    link_group: Vec<String>,
}

fn collect(cim: &cimfs::Cim) -> Result<(Vec<String>, HashMap<String, Side>)> {
    let mut order = Vec::new();
    let mut map = HashMap::new();
    let mut groups: HashMap<cimfs::FileId, Vec<String>> = HashMap::new();
    walk::walk(cim, "", cim.root(), true, &mut |e| {
        let key = e.path.to_lowercase();
        if !e.info.is_directory {
            groups.entry(e.info.file_id).or_default().push(key.clone());
        }
        order.push(key.clone());
        map.insert(
            key,
            Side {
                path: e.path.clone(),
                info: e.info.clone(),
                link_group: Vec::new(),
            },
        );
        Ok(())
    })?;
    for (_, mut paths) in groups {
        if paths.len() < 2 {
            continue;
        }
        paths.sort();
        for p in &paths {
            if let Some(side) = map.get_mut(p) {
                side.link_group = paths.clone();
            }
        }
    }
    Ok((order, map))
}

fn same_stream(
    a: &cimfs::Cim,
    ia: cimfs::FileId,
    b: &cimfs::Cim,
    ib: cimfs::FileId,
    stream: Option<&str>,
    path: &str,
) -> Result<bool> {
    let mut ra = a
        .open_id(ia, stream)
        .with_context(|| format!("{}: {path}", a.path().display()))?;
    let mut rb = b
        .open_id(ib, stream)
        .with_context(|| format!("{}: {path}", b.path().display()))?;
    if ra.len() != rb.len() {
        return Ok(false);
    }
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut ra, &mut ba)
            .with_context(|| format!("{}: {path}", a.path().display()))?;
        let m = read_full(&mut rb, &mut bb)
            .with_context(|| format!("{}: {path}", b.path().display()))?;
        if n != m || ba.get(..n) != bb.get(..m) {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn compare(
    a: &cimfs::Cim,
    sa: &Side,
    b: &cimfs::Cim,
    sb: &Side,
    ignore_times: bool,
) -> Result<Vec<&'static str>> {
    let (x, y) = (&sa.info, &sb.info);
    let mut what = Vec::new();
    if output::entry_type(x) != output::entry_type(y) || x.is_directory != y.is_directory {
        what.push("type");
        return Ok(what);
    }
    if !x.is_directory {
        if x.size != y.size {
            what.push("size");
        }
        if x.size != y.size || !same_stream(a, x.file_id, b, y.file_id, None, &sa.path)? {
            what.push("data");
        }
    }
    if x.attributes != y.attributes {
        what.push("attributes");
    }
    if !ignore_times
        && (
            x.creation_time,
            x.last_write_time,
            x.change_time,
            x.last_access_time,
        ) != (
            y.creation_time,
            y.last_write_time,
            y.change_time,
            y.last_access_time,
        )
    {
        what.push("times");
    }
    if x.security_descriptor != y.security_descriptor {
        what.push("sd");
    }
    if x.extended_attributes != y.extended_attributes {
        what.push("ea");
    }
    if x.reparse_data != y.reparse_data {
        what.push("reparse");
    }
    if !x.is_directory {
        let ctx_a = || format!("{}: {}", a.path().display(), sa.path);
        let ctx_b = || format!("{}: {}", b.path().display(), sb.path);
        let mut streams_a = a.streams_id(x.file_id).with_context(ctx_a)?;
        let mut streams_b = b.streams_id(y.file_id).with_context(ctx_b)?;
        streams_a.sort_by_key(|s| s.name.to_lowercase());
        streams_b.sort_by_key(|s| s.name.to_lowercase());
        let mut same = streams_a.len() == streams_b.len();
        if same {
            for (p, q) in streams_a.iter().zip(&streams_b) {
                if !p.name.eq_ignore_ascii_case(&q.name)
                    || p.size != q.size
                    || !same_stream(a, x.file_id, b, y.file_id, Some(&p.name), &sa.path)?
                {
                    same = false;
                    break;
                }
            }
        }
        if !same {
            what.push("streams");
        }
        if sa.link_group != sb.link_group {
            what.push("links");
        }
    }
    Ok(what)
}

pub fn run(args: Args) -> Result<Outcome> {
    let a = open_cim(&args.cim_a)?;
    let b = open_cim(&args.cim_b)?;
    let (order_a, map_a) = collect(&a)?;
    let (order_b, map_b) = collect(&b)?;
    let mut out = output::stdout();
    let mut differences = 0u64;
    let mut emit = |out: &mut dyn Write, path: &str, change: &str, what: &[&str]| -> Result<()> {
        differences += 1;
        if args.json {
            output::json_line(out, &json!({"path": path, "change": change, "what": what}))?;
        } else {
            let sign = match change {
                "added" => "+",
                "removed" => "-",
                _ => "M",
            };
            if what.is_empty() {
                writeln!(out, "{sign} {path}")?;
            } else {
                writeln!(out, "{sign} {path} ({})", what.join(", "))?;
            }
        }
        Ok(())
    };
    for key in &order_a {
        let Some(sa) = map_a.get(key) else { continue };
        match map_b.get(key) {
            None => emit(&mut out, &sa.path, "removed", &[])?,
            Some(sb) => {
                let what = compare(&a, sa, &b, sb, args.ignore_times)?;
                if !what.is_empty() {
                    emit(&mut out, &sb.path, "changed", &what)?;
                }
            }
        }
    }
    for key in &order_b {
        if let (None, Some(sb)) = (map_a.get(key), map_b.get(key)) {
            emit(&mut out, &sb.path, "added", &[])?;
        }
    }
    out.flush()?;
    Ok(if differences == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
