//! cimkit: import Windows container layers into CimFS images, and look inside, verify, extract,
//! export, diff and mount those images. This file parses arguments and maps outcomes to exit
//! codes (0 ok, 1 check failed / differences, 2 usage or input error); the work is in `cmd/`.

// Doc comments here are the --help text, where `SNAPSHOTS/<id>` is meant literally, not as HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cmd;
mod output;
mod progress;
mod walk;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Windows container images as CimFS files, on any OS.
#[derive(Parser)]
#[command(
    name = "cimkit",
    version,
    about,
    long_about = None,
    max_term_width = 100,
    after_help = "Exit codes: 0 success; 1 a check failed (verify, hive check), problems were \
found (vhdx info) or differences were found (diff); 2 usage error or bad input. `cimkit <command> --help` shows a command's \
options and examples; README.md documents every command.\n\n\
Example: cimkit import base.tar.gz --layer /var/snapshots/1 && cimkit ls -R -l \
/var/snapshots/cim-layers/1.cim"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a layer tar (.tar, .tar.gz, .tar.zst) as a CIM layer.
    Import(cmd::import::Args),
    /// Import every layer of an OCI image layout or `docker save` archive.
    ImportImage(cmd::import_image::Args),
    /// List the layers of an OCI image layout or `docker save` archive.
    ImageLayers(cmd::image_layers::Args),
    /// List a directory of a CIM.
    Ls(cmd::ls::Args),
    /// Show everything a CIM stores about one file or directory.
    Stat(cmd::stat::Args),
    /// Write a file's data (or one of its alternate streams) to stdout.
    Cat(cmd::cat::Args),
    /// Check that a CIM and its regions are sound.
    Verify(cmd::verify::Args),
    /// Copy a CIM's contents into a folder.
    Extract(cmd::extract::Args),
    /// Write a CIM's contents as a Windows layer tar (go-winio backuptar dialect).
    Export(cmd::export::Args),
    /// Compare two CIMs: added, removed and changed paths.
    Diff(cmd::diff::Args),
    /// Show how much disk a CIM uses: its own files and its parents'.
    Du(cmd::du::Args),
    /// Remove a CIM layer (its .cim and own region/objectid files).
    Destroy(cmd::destroy::Args),
    /// Mount a CIM read-only with FUSE (Linux).
    Mount(cmd::mount::Args),
    /// Registry hives: dump, get, set, merge, check.
    Hive(cmd::hive::Args),
    /// VHDX disks: info.
    Vhdx(cmd::vhdx::Args),
    /// BCD stores: show.
    Bcd(cmd::bcd::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help / --version print to stdout and succeed; real usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // A reader that stops early (`| head`) is normal for listings; for an archive, a sidecar or
    // file data it means the consumer got a truncated copy, which must not look like success.
    let whole_output_matters = matches!(
        cli.command,
        Command::Export(_) | Command::Extract(_) | Command::Cat(_)
    );
    let result = match cli.command {
        Command::Import(a) => cmd::import::run(a),
        Command::ImportImage(a) => cmd::import_image::run(a),
        Command::ImageLayers(a) => cmd::image_layers::run(a),
        Command::Ls(a) => cmd::ls::run(a),
        Command::Stat(a) => cmd::stat::run(a),
        Command::Cat(a) => cmd::cat::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Extract(a) => cmd::extract::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Diff(a) => cmd::diff::run(a),
        Command::Du(a) => cmd::du::run(a),
        Command::Destroy(a) => cmd::destroy::run(a),
        Command::Mount(a) => cmd::mount::run(a),
        Command::Hive(a) => cmd::hive::run(a),
        Command::Vhdx(a) => cmd::vhdx::run(a),
        Command::Bcd(a) => cmd::bcd::run(a),
    };
    match result {
        Ok(cmd::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(cmd::Outcome::Failed) => ExitCode::from(1),
        Err(e) if output::is_broken_pipe(&e) && !whole_output_matters => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => {
            eprintln!("cimkit: error: the output was closed before it was complete (broken pipe)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("cimkit: error: {}", output::error_message(&e));
            ExitCode::from(2)
        }
    }
}
