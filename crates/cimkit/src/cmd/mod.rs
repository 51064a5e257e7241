//! One module per subcommand: each has an `Args` (clap) and a `run` that calls a library and
//! renders the result.

pub mod bcd;
pub mod cat;
pub mod destroy;
pub mod diff;
pub mod du;
pub mod export;
pub mod extract;
pub mod hive;
pub mod image_layers;
pub mod import;
pub mod import_image;
pub mod ls;
pub mod mount;
pub mod stat;
pub mod verify;
pub mod vhdx;

/// How a command that ran to the end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: a check failed or differences were found.
    Failed,
}

/// Opens a CIM, naming the file on failure.
pub fn open_cim(path: &std::path::Path) -> anyhow::Result<cimfs::Cim> {
    use anyhow::Context as _;
    check_cim_path(path)?;
    cimfs::Cim::open(path).with_context(|| format!("cannot open CIM {}", path.display()))
}

/// The bytes of a file (or of `FILE:stream`) inside a CIM, with its path as the image spells
/// it; None when there is no such file. A symlink or junction has no data: naming one is an
/// error that says where it points.
pub fn read_cim_file(cim: &cimfs::Cim, spec: &str) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let (path, stream) = cat::split_stream(spec);
    let stored = match cim.stored_path(&crate::walk::normalize(path)) {
        Ok(stored) => stored,
        Err(cimfs::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let info = cim.file(cim.lookup(&stored)?)?;
    let stream = stream.filter(|s| !s.is_empty());
    if stream.is_none() {
        if let Some(target) = crate::output::link_target(&info) {
            anyhow::bail!(
                "is a link to {target}, not a file (links are not followed inside an image)"
            );
        }
        if info.is_directory {
            anyhow::bail!("is a directory");
        }
    }
    let mut r = match stream {
        Some(s) => cim.open_stream(&stored, s)?,
        None => cim.open_file(&stored)?,
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut bytes)?;
    let name = match stream {
        Some(s) => format!("{stored}:{s}"),
        None => stored,
    };
    Ok(Some((name, bytes)))
}

/// Refuses a folder where a `.cim` file is wanted, naming the layer's image when the folder is
/// a CIM layer (`SNAPSHOTS/<id>` → `SNAPSHOTS/cim-layers/<id>.cim`).
pub fn check_cim_path(path: &std::path::Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        // Said the same way by every command (the OS error would differ with the call).
        anyhow::bail!("cannot open CIM {}: no such file", path.display());
    }
    if !path.is_dir() {
        return Ok(());
    }
    if wclayer::is_cim_layer(path) {
        anyhow::bail!(
            "{} is a layer folder, not a .cim file: its image is {}",
            path.display(),
            wclayer::cim_path_for_layer(path).display()
        );
    }
    anyhow::bail!("{} is a folder, not a .cim file", path.display())
}
