//! `cimkit bcd`: list a Boot Configuration Data store like `bcdedit /enum all /v`.
//! The store can be a file or a path inside a CIM (`--cim`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{open_cim, Outcome};
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BcdCommand,
}

#[derive(clap::Subcommand)]
pub enum BcdCommand {
    /// Every object and element, devices decoded.
    Show {
        /// BCD store file; with --cim, a path inside the image
        /// (e.g. UtilityVM\Files\EFI\Microsoft\Boot\BCD).
        store: String,
        /// Read the store from inside this CIM.
        #[arg(long)]
        cim: Option<PathBuf>,
        /// One JSON object per BCD object and line: {identifier, type, elements: [{id, name, value, error}]}
        /// (`error` says why an element could not be decoded; `value` is then null).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> Result<Outcome> {
    let BcdCommand::Show { store, cim, json } = args.command;
    let (bytes, name) = match &cim {
        Some(cim_path) => {
            let image = open_cim(cim_path)?;
            let asked = format!("{}:{store}", cim_path.display());
            let (stored, bytes) = super::read_cim_file(&image, &store)
                .with_context(|| asked.clone())?
                .with_context(|| format!("{asked}: not found"))?;
            (bytes, format!("{}:{stored}", cim_path.display()))
        }
        None => (
            std::fs::read(&store).with_context(|| format!("cannot read {store}"))?,
            store.clone(),
        ),
    };
    let hive = regf::Hive::parse(&bytes).with_context(|| format!("{name}: not a readable hive"))?;
    let mut out = output::stdout();
    if json {
        let st = bcd::Store::open(&hive).with_context(|| name.clone())?;
        for o in st.objects() {
            let elements: Vec<serde_json::Value> = o
                .elements()
                .iter()
                .map(|e| {
                    let (value, error) = match e.decode() {
                        Ok(v) => (Some(v.to_string()), None),
                        Err(why) => (None, Some(why)),
                    };
                    json!({
                        "id": format!("{:08x}", e.id),
                        "name": bcd::element_name(e.id, o.object_type()),
                        "value": value,
                        "error": error,
                    })
                })
                .collect();
            output::json_line(
                &mut out,
                &json!({
                    "identifier": o.key_name(),
                    "type": o.object_type().map(|t| format!("{t:08x}")),
                    "elements": elements,
                    // Keys under Elements that are not element ids (none in a store Windows wrote).
                    "stray_keys": o.stray_keys(),
                }),
            )?;
        }
    } else {
        bcd::show(&hive, &mut out).with_context(|| name.clone())?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
