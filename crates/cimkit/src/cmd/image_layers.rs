//! `cimkit image-layers`: what an OCI layout or docker-save archive holds, bottom layer first.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use ociimage::{DigestPrefix, ManifestCandidate, Platform};
use serde_json::json;

use super::Outcome;
use crate::output;

#[derive(clap::Args)]
pub struct Args {
    /// OCI image layout (folder or tar) or `docker save` archive (tar or extracted folder).
    pub source: PathBuf,
    #[command(flatten)]
    pub select: Select,
    /// One JSON object per layer and line.
    #[arg(long)]
    pub json: bool,
}

/// Which manifest of an image to read (shared with `import-image`).
#[derive(clap::Args)]
pub struct Select {
    /// Which manifest of a multi-platform index to read: os/arch, the CPU variant when the
    /// index tells manifests apart by it (`windows/arm64/v8`; an image stating none has arm64's
    /// v8, arm's v7), and the Windows version when the index has one manifest per version
    /// (`windows/amd64:10.0.20348`, or containerd's `windows(10.0.20348)/amd64`); a version
    /// matches every os.version that begins with it, so 10.0.20348 is any ltsc2022 build.
    #[arg(
        long,
        default_value = "windows/amd64",
        value_name = "OS/ARCH[/VARIANT][:VERSION]"
    )]
    pub platform: Platform,
    /// The manifest to read, by digest (`sha256:<hex>`, at least 12 leading hex digits, or a
    /// reference `name@sha256:<hex>`, of which the part after the last `@` is used): its manifest
    /// digest, or the IMAGE ID `docker images` shows: the config digest (any docker save
    /// archive), or with docker's containerd image store the image index digest, among whose
    /// manifests --platform then chooses. It must be for --platform too.
    #[arg(long, value_name = "DIGEST")]
    pub manifest: Option<DigestPrefix>,
}

impl Select {
    /// Opens the image source and picks the manifest; when several match, the error says which
    /// option picks each.
    pub fn open(&self, source: &Path) -> Result<ociimage::Image> {
        let selector = ociimage::Selector {
            platform: self.platform.clone(),
            digest: self.manifest.clone(),
        };
        let image = ociimage::Image::open_with(source, &selector).map_err(|e| {
            let hint = match &e {
                ociimage::Error::AmbiguousManifest { candidates, .. } => how_to_pick(candidates),
                _ => String::new(),
            };
            // The library's error starts with the source path.
            anyhow!("cannot read image: {e}{hint}")
        })?;
        let reading = format!(
            "{}{}",
            image
                .manifest_digest()
                .or(image.config_digest())
                .map_or_else(|| "?".to_string(), |d| d.short()),
            image
                .os_version()
                .map(|v| format!(" (os.version {v})"))
                .unwrap_or_default()
        );
        for c in image.absent_alternatives() {
            let listed = if c.platform.os.is_empty() {
                "also listed".to_string()
            } else {
                format!("also listed for {}", self.platform)
            };
            eprintln!(
                "cimkit: note: {}: {listed}: {c}; reading {reading}, which the source holds",
                source.display(),
            );
        }
        Ok(image)
    }
}

/// One line per candidate in the source: the shortest --platform that picks it alone (adding
/// its variant, its build or its whole os.version, when any does), and its --manifest.
fn how_to_pick(candidates: &[ManifestCandidate]) -> String {
    let mut text = String::new();
    for c in candidates.iter().filter(|c| c.present) {
        let p = &c.platform;
        // The variant it has even when it states none (arm64's v8), which --platform matches.
        let variants = [None, p.effective_variant()];
        let versions = p.os_version.as_deref().map_or_else(Vec::new, |v| {
            let build: Vec<&str> = v.split('.').take(3).collect();
            vec![build.join("."), v.to_string()]
        });
        let versions = std::iter::once(None).chain(versions.iter().map(|v| Some(v.as_str())));
        let by_platform = versions
            .flat_map(|version| variants.iter().map(move |variant| (*variant, version)))
            .filter(|(variant, version)| variant.is_some() || version.is_some())
            .find_map(|(variant, version)| {
                // Only what --platform would accept (an image may state any text).
                let mut want = format!("{}/{}", p.os, p.architecture);
                if let Some(v) = variant {
                    want = format!("{want}/{v}");
                }
                if let Some(v) = version {
                    want = format!("{want}:{v}");
                }
                let wanted = Platform::parse(&want).ok()?;
                let hits = candidates
                    .iter()
                    .filter(|o| wanted.matches(&o.platform))
                    .count();
                (hits == 1).then(|| format!("--platform {wanted} or "))
            });
        text.push_str(&format!(
            "\n  {}--manifest {}",
            by_platform.unwrap_or_default(),
            c.digest.short()
        ));
    }
    text
}

pub fn run(args: Args) -> Result<Outcome> {
    let image = args.select.open(&args.source)?;
    let mut out = output::stdout();
    if !args.json {
        let id = match (image.manifest_digest(), image.config_digest()) {
            (Some(m), _) => format!(", manifest {}", m.short()),
            (None, Some(c)) => format!(", image id {}", c.short()),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "{} ({}{}), {}{id}",
            args.source.display(),
            image.format(),
            image
                .platform()
                .map(|p| format!(", {p}"))
                .unwrap_or_default(),
            output::count(image.layers().len(), "layer")
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
                    "platform": image.platform().map(|p| p.to_string()),
                    "os_version": image.os_version(),
                    "manifest": image.manifest_digest().map(|d| d.to_string()),
                    "config": image.config_digest().map(|d| d.to_string()),
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
