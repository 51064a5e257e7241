//! `cimkit cat`: copy a file's default stream, or one alternate stream, to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::{open_cim, Outcome};
use crate::walk;

#[derive(clap::Args)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// File inside the image; `PATH:stream` (or `PATH:stream:$DATA`) selects an alternate stream.
    pub path: String,
}

/// Splits `dir\file:stream[:$DATA]` into path and stream (names cannot contain `:` on Windows).
pub fn split_stream(spec: &str) -> (&str, Option<&str>) {
    let name_start = spec.rfind(['\\', '/']).map_or(0, |i| i + 1);
    let name = spec.get(name_start..).unwrap_or_default();
    match name.find(':') {
        Some(i) => {
            let path = spec.get(..name_start + i).unwrap_or(spec);
            let stream = name.get(i + 1..).unwrap_or_default();
            let stream = stream.strip_suffix(":$DATA").unwrap_or(stream);
            (path, Some(stream))
        }
        None => (spec, None),
    }
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = open_cim(&args.cim)?;
    let (path, stream) = split_stream(&args.path);
    let (path, id) = walk::resolve(&cim, &args.cim, path)?;
    // Spelled as the reader's own errors spell it, so the message does not name it twice.
    let shown = match stream {
        Some(s) => format!("{}:{s}", walk::display(&path)),
        None => walk::display(&path).to_string(),
    };
    let ctx = || format!("{}: {shown}", args.cim.display());
    let info = cim.file(id).with_context(ctx)?;
    if stream.is_none() {
        if let Some(target) = crate::output::link_target(&info) {
            let kind = if info.is_directory {
                "junction or directory symlink"
            } else {
                "symlink"
            };
            eprintln!(
                "cimkit: note: {}: {} is a {kind} to {}; it has no data of its own \
                 (links are not followed inside an image)",
                args.cim.display(),
                walk::display(&path),
                crate::output::shown(&target)
            );
            if info.is_directory {
                return Ok(Outcome::Ok);
            }
        }
    }
    if info.is_directory && stream.is_none() {
        bail!(
            "{}: {}: is a directory",
            args.cim.display(),
            walk::display(&path)
        );
    }
    let mut reader = match stream {
        Some(s) if !s.is_empty() => cim.open_stream(&path, s),
        _ => cim.open_file(&path),
    }
    .with_context(ctx)?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut reader, &mut out).with_context(ctx)?;
    out.flush()?;
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::split_stream;

    #[test]
    fn stream_syntax() {
        assert_eq!(split_stream(r"Files\a.txt"), (r"Files\a.txt", None));
        assert_eq!(
            split_stream(r"Files\a.txt:zone"),
            (r"Files\a.txt", Some("zone"))
        );
        assert_eq!(
            split_stream("Files/a.txt:zone:$DATA"),
            ("Files/a.txt", Some("zone"))
        );
    }
}
