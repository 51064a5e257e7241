//! `cimkit vhdx`: what a VHDX file is (type, sizes, GUIDs, regions, blocks, parent, and
//! whether a dirty log was replayed in memory), and the problems found in its BAT and region
//! table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Outcome;
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: VhdxCommand,
}

#[derive(clap::Subcommand)]
pub enum VhdxCommand {
    /// Describe a VHDX file (and its parent, for a differencing disk).
    #[command(
        after_help = "Exit codes: 0 described, no problems; 1 described, but problems were found \
(BAT entries whose block lies past the end of the file, over the header section, the log, a \
region or another block, or whose state is reserved or only for differencing disks; a damaged \
first region table): all are counted, the first 10 listed, and reading such a block fails; 2 the \
file cannot be read (not a VHDX, or a structure it cannot do without is damaged or breaks \
MS-VHDX). A differencing disk's parent that cannot be used (missing, not its parent, another \
size or sector size, damaged) is named with the reason and does not change the exit code."
    )]
    Info {
        /// The .vhdx file.
        file: PathBuf,
        /// Print the description as one JSON object (`ok` is false when problems were found;
        /// `problems` lists the first 10, `problems_total` counts them all).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> Result<Outcome> {
    let VhdxCommand::Info { file, json } = args.command;
    let info = vhdx::info(&file).with_context(|| format!("cannot read VHDX {}", file.display()))?;
    let mut out = output::stdout();
    if json {
        let v = json!({
            "path": info.path.display().to_string(),
            "file_size": info.file_size,
            "creator": info.creator,
            "disk_type": info.disk_type.to_string(),
            "virtual_size": info.virtual_size,
            "block_size": info.block_size,
            "logical_sector_size": info.logical_sector_size,
            "physical_sector_size": info.physical_sector_size,
            "virtual_disk_id": info.virtual_disk_id.to_string(),
            "sequence_number": info.sequence_number,
            "file_write_guid": info.file_write_guid.to_string(),
            "data_write_guid": info.data_write_guid.to_string(),
            "log_offset": info.log_offset,
            "log_length": info.log_length,
            "log_replay": log_replay_json(&info.log_replay),
            "bat_entries": info.bat_entries,
            "payload_blocks": info.payload_blocks,
            "blocks_present": info.blocks_present,
            "blocks_partial": info.blocks_partial,
            "blocks_zero": info.blocks_zero,
            "parent_locator": info.parent_locator.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "parent": info.parent.as_ref().map(|p| p.display().to_string()),
            "parent_problem": info.parent_problem,
            "ok": info.problems_total == 0,
            "problems_total": info.problems_total,
            "problems": info.problems,
        });
        output::json_line(&mut out, &v)?;
    } else {
        write!(out, "{info}")?;
    }
    out.flush()?;
    Ok(if info.problems_total == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// The log state as JSON: `state` is clean, no_valid_entries, replayed_in_memory (a read-only
/// open, file unchanged) or replayed_into_file.
fn log_replay_json(l: &vhdx::LogReplay) -> serde_json::Value {
    let replayed = |state: &str, r: &vhdx::ReplayedLog| {
        json!({
            "state": state,
            "log_guid": r.log_guid.to_string(),
            "entries": r.entries,
            "first_sequence": r.first_sequence,
            "last_sequence": r.last_sequence,
            "data_sectors": r.data_sectors,
            "zero_ranges": r.zero_ranges,
        })
    };
    match l {
        vhdx::LogReplay::Clean => json!({"state": "clean"}),
        vhdx::LogReplay::NoValidEntries { log_guid } => {
            json!({"state": "no_valid_entries", "log_guid": log_guid.to_string()})
        }
        vhdx::LogReplay::InMemory(r) => replayed("replayed_in_memory", r),
        vhdx::LogReplay::Written(r) => replayed("replayed_into_file", r),
    }
}
