//! `cimkit diff`: paths added, removed or changed between two CIMs (data compared byte by byte,
//! metadata field by field, by wclayer::treediff); exit 1 when they differ.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;
use wclayer::treediff::{diff_trees, CompareOptions, Difference, Tree};

use super::{open_cim, Outcome};
use crate::output;

#[derive(clap::Args)]
#[command(
    after_help = "Output lines: `+ PATH` added in CIM_B, `- PATH` removed, `M PATH (what)` \
changed, where what lists, in this order: type, size, data, attributes, times, sd, ea, reparse, \
streams, links (hard-link grouping). Paths compare case-insensitively; the root directory itself is not compared."
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

pub fn run(args: Args) -> Result<Outcome> {
    let a = open_cim(&args.cim_a)?;
    let b = open_cim(&args.cim_b)?;
    let (ta, tb) = (Tree::read(&a)?, Tree::read(&b)?);
    let opts = CompareOptions {
        ignore_times: args.ignore_times,
        ignore_links: false,
    };
    let differences = diff_trees(&a, &ta, &b, &tb, &opts)?;
    let mut out = output::stdout();
    for d in &differences {
        let (path, change, sign, what) = match d {
            Difference::Added(p) => (p, "added", "+", Vec::new()),
            Difference::Removed(p) => (p, "removed", "-", Vec::new()),
            Difference::Changed(p, w) => (p, "changed", "M", w.iter().map(|c| c.name()).collect()),
        };
        if args.json {
            output::json_line(
                &mut out,
                &json!({"path": path, "change": change, "what": what}),
            )?;
        } else if what.is_empty() {
            writeln!(out, "{sign} {}", output::shown(path))?;
        } else {
            writeln!(out, "{sign} {} ({})", output::shown(path), what.join(", "))?;
        }
    }
    out.flush()?;
    Ok(if differences.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
