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
    cimfs::Cim::open(path).with_context(|| format!("cannot open CIM {}", path.display()))
}
