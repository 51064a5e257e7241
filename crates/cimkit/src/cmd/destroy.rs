//! `cimkit destroy`: remove a CIM layer's .cim and its own region/objectid files.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Outcome;

#[derive(clap::Args)]
pub struct Args {
    /// The layer folder (SNAPSHOTS/<id>); its CIM is SNAPSHOTS/cim-layers/<id>.cim.
    #[arg(long)]
    pub layer: PathBuf,
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = wclayer::cim_path_for_layer(&args.layer);
    if !wclayer::is_cim_layer(&args.layer) {
        eprintln!(
            "cimkit: {}: not a CIM layer ({} does not exist); nothing removed",
            args.layer.display(),
            cim.display()
        );
        return Ok(Outcome::Ok);
    }
    wclayer::destroy_layer(&args.layer)
        .with_context(|| format!("cannot destroy layer {}", args.layer.display()))?;
    println!("removed {}", cim.display());
    Ok(Outcome::Ok)
}
