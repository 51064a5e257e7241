//! Example: `hive dump HIVE`, `hive reg HIVE [PREFIX]`, `hive merge BASE DELTA OUT`,
//! `hive rewrite IN OUT` (parse and write compactly), `hive check HIVE` (validator).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["dump", hive] => regf::Hive::open(Path::new(hive)).and_then(|h| {
            let mut out = std::io::stdout().lock();
            regf::dump(&h, &mut out)
                .and_then(|()| out.flush())
                .map_err(|e| io_err(hive, e))
        }),
        ["reg", hive, rest @ ..] if rest.len() <= 1 => {
            regf::Hive::open(Path::new(hive)).and_then(|h| {
                let prefix = rest.first().copied().unwrap_or("HKEY_LOCAL_MACHINE\\HIVE");
                let mut out = std::io::stdout().lock();
                regf::export_reg(&h, prefix, &mut out)
                    .and_then(|()| out.flush())
                    .map_err(|e| io_err(hive, e))
            })
        }
        ["merge", base, delta, out] => (|| {
            let base = regf::Hive::open(Path::new(base))?;
            let delta = regf::Hive::open(Path::new(delta))?;
            regf::merge(&base, &delta)?.save(Path::new(out))
        })(),
        ["rewrite", input, out] => {
            regf::Hive::open(Path::new(input)).and_then(|h| h.save(Path::new(out)))
        }
        ["check", hive] => match std::fs::read(hive) {
            Ok(bytes) => {
                let problems = regf::validate::validate(&bytes);
                for p in &problems {
                    println!("{p}");
                }
                println!("{} problems", problems.len());
                Ok(())
            }
            Err(e) => Err(io_err(hive, e)),
        },
        _ => {
            eprintln!("usage: hive dump HIVE | hive reg HIVE [PREFIX] | hive merge BASE DELTA OUT | hive rewrite IN OUT | hive check HIVE");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn io_err(path: &str, source: std::io::Error) -> regf::Error {
    regf::Error::Io {
        path: path.into(),
        source,
    }
}
