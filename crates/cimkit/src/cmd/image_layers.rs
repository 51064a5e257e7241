//! `cimkit image-layers`: what an OCI layout or docker-save archive holds, bottom layer first.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Outcome;
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    /// OCI image layout (folder or tar) or `docker save` archive (tar or extracted folder).
    pub source: PathBuf,
    /// Which manifest of a multi-platform index to read.
    #[arg(long, default_value = "windows/amd64")]
    pub platform: String,
    /// One JSON object per layer and line.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_platform(s: &str) -> Result<ociimage::Platform> {
    ociimage::Platform::parse(s).with_context(|| format!("bad --platform {s:?} (want os/arch)"))
}

pub fn run(args: Args) -> Result<Outcome> {
    let platform = parse_platform(&args.platform)?;
    let image = ociimage::Image::open(&args.source, &platform)
        .with_context(|| format!("cannot read image {}", args.source.display()))?;
    let mut out = output::stdout();
    if !args.json {
        writeln!(
            out,
            "{} ({}{}), {} layers",
            args.source.display(),
            image.format(),
            image
                .platform()
                .map(|p| format!(", {p}"))
                .unwrap_or_default(),
            image.layers().len()
        )?;
        writeln!(
            out,
            "{:>3} {:<71} {:>12} {:<5} MEDIA TYPE",
            "#", "DIGEST", "BYTES", "COMPR"
        )?;
    }
    for l in image.layers() {
        if args.json {
            output::json_line(
                &mut out,
                &json!({
                    // 1 = base layer, as the text listing and import-image's DIR/<n> count.
                    "layer": l.index + 1,
                    "digest": l.digest.to_string(),
                    "diff_id": l.diff_id.as_ref().map(|d| d.to_string()),
                    "media_type": l.media_type,
                    "compression": l.compression.to_string(),
                    "size": l.size,
                    "foreign": l.foreign,
                    "urls": l.urls,
                    "present": l.present,
                }),
            )?;
        } else {
            writeln!(
                out,
                "{:>3} {:<71} {:>12} {:<5} {}{}",
                l.index + 1,
                l.digest,
                l.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                l.compression,
                l.media_type,
                if l.present { "" } else { " (not included)" }
            )?;
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
