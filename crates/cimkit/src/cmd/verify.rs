//! `cimkit verify`: run cimfs's checks over an image and its regions (and, with `--digests`, over
//! the stored data); exit 1 when any fail.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::Outcome;
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// Print {"cim", "ok", "problems": [{file, object, offset, message, text}]} as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also re-hash every object the image's own objectid files list and compare it with the
    /// recorded digest (reads all of the image's stored data; parents' data is not re-hashed).
    #[arg(long)]
    pub digests: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    super::check_cim_path(&args.cim)?;
    let mut problems = cimfs::verify::verify(&args.cim);
    let mut rehashed = None;
    if args.digests {
        let report = cimfs::verify::verify_digests_report(&args.cim);
        rehashed = Some(report.objects);
        problems.extend(report.problems);
    }
    let mut out = output::stdout();
    if args.json {
        let list: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| {
                json!({
                    "file": p.file.display().to_string(),
                    "object": p.object,
                    "offset": p.offset,
                    "message": p.message,
                    "text": p.to_string(),
                })
            })
            .collect();
        output::json_line(
            &mut out,
            &json!({"cim": args.cim.display().to_string(), "ok": list.is_empty(),
                "objects_rehashed": rehashed, "problems": list}),
        )?;
    } else if problems.is_empty() {
        match rehashed {
            Some(n) => writeln!(
                out,
                "{}: OK ({} re-hashed, {})",
                args.cim.display(),
                output::count(n, "stored object"),
                if n == 1 { "it matches" } else { "all match" }
            )?,
            None => writeln!(out, "{}: OK", args.cim.display())?,
        }
    } else {
        for p in &problems {
            writeln!(out, "{p}")?;
        }
        writeln!(
            out,
            "{}: {} found",
            args.cim.display(),
            output::count(problems.len(), "problem")
        )?;
    }
    out.flush()?;
    Ok(if problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
