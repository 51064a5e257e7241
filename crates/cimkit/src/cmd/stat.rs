//! `cimkit stat`: everything a CIM stores about one file or directory.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::{open_cim, Outcome};
use crate::output;
use crate::walk;

#[derive(clap::Args)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// File or directory inside the image (`\` or `/`; "" or `\` is the root); `PATH:stream`
    /// shows one alternate data stream.
    pub path: String,
    /// Print the same JSON object as `ls --json` (for `PATH:stream`: path, stream, size and
    /// sha256).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = open_cim(&args.cim)?;
    let (file, stream) = super::cat::split_stream(&args.path);
    let (path, id) = walk::resolve(&cim, &args.cim, file)?;
    let ctx = || format!("{}: {}", args.cim.display(), walk::display(&path));
    let info = cim.file(id).with_context(ctx)?;
    let mut out = output::stdout();
    if let Some(name) = stream.filter(|s| !s.is_empty()) {
        let streams = cim.streams_id(id).with_context(ctx)?;
        let Some(s) = streams.iter().find(|s| s.name.eq_ignore_ascii_case(name)) else {
            anyhow::bail!(
                "{}: {}: no alternate data stream {}",
                args.cim.display(),
                walk::display(&path),
                output::quote(name)
            );
        };
        let r = cim.open_id(id, Some(&s.name)).with_context(ctx)?;
        let sha = output::sha256_of(r).with_context(ctx)?;
        if args.json {
            let v =
                serde_json::json!({"path": path, "stream": s.name, "size": s.size, "sha256": sha});
            output::json_line(&mut out, &v)?;
        } else {
            writeln!(
                out,
                "Path:        {}:{}",
                walk::display(&path),
                output::shown(&s.name)
            )?;
            writeln!(out, "Type:        alternate data stream of file {id}")?;
            writeln!(
                out,
                "Size:        {} ({})",
                s.size,
                output::human_size(s.size)
            )?;
            writeln!(out, "SHA-256:     {sha}")?;
        }
        out.flush()?;
        return Ok(Outcome::Ok);
    }
    if args.json {
        let v = output::entry_json(&cim, &path, &info, true)?;
        output::json_line(&mut out, &v)?;
        out.flush()?;
        return Ok(Outcome::Ok);
    }
    writeln!(out, "Path:        {}", walk::display(&path))?;
    writeln!(out, "Type:        {}", output::entry_type(&info))?;
    writeln!(out, "File id:     {}", info.file_id)?;
    writeln!(
        out,
        "Attributes:  {:#010x} {}",
        info.attributes,
        output::attribute_names(info.attributes)
    )?;
    if !info.is_directory {
        writeln!(
            out,
            "Size:        {} ({})",
            info.size,
            output::human_size(info.size)
        )?;
        let mut flags = Vec::new();
        if info.sparse {
            flags.push("sparse");
        }
        if info.pe_image {
            flags.push("pe-image");
        }
        if !flags.is_empty() {
            writeln!(out, "Storage:     {}", flags.join(", "))?;
        }
    }
    for (label, t) in [
        ("Created:    ", info.creation_time),
        ("Written:    ", info.last_write_time),
        ("Changed:    ", info.change_time),
        ("Accessed:   ", info.last_access_time),
    ] {
        writeln!(out, "{label} {} ({t})", output::filetime(t, true))?;
    }
    if info.security_descriptor.is_empty() {
        writeln!(out, "SD:          none")?;
    } else {
        let (owner, group) = output::sd_owner_group(&info.security_descriptor);
        writeln!(out, "Owner:       {}", owner.as_deref().unwrap_or("-"))?;
        writeln!(out, "Group:       {}", group.as_deref().unwrap_or("-"))?;
        writeln!(
            out,
            "SD:          {} bytes: {}",
            info.security_descriptor.len(),
            output::hex(&info.security_descriptor)
        )?;
    }
    if !info.extended_attributes.is_empty() {
        match wclayer::backuptar::decode_extended_attributes(&info.extended_attributes) {
            Ok(eas) => {
                for ea in eas {
                    writeln!(
                        out,
                        "EA:          {} = {}",
                        ea.name,
                        output::base64(&ea.value)
                    )?;
                }
            }
            Err(e) => writeln!(
                out,
                "EA:          {} bytes (undecodable: {e}): {}",
                info.extended_attributes.len(),
                output::hex(&info.extended_attributes)
            )?,
        }
    }
    if info.reparse_tag != 0 || !info.reparse_data.is_empty() {
        let target = output::link_target(&info)
            .map(|t| format!(" -> {}", output::shown(&t)))
            .unwrap_or_default();
        writeln!(
            out,
            "Reparse:     tag {:#010x}, {} bytes{target}",
            info.reparse_tag,
            info.reparse_data.len()
        )?;
    }
    for s in cim.streams_id(info.file_id).with_context(ctx)? {
        writeln!(
            out,
            "Stream:      {}:{} ({} bytes)",
            walk::display(&path),
            s.name,
            s.size
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
