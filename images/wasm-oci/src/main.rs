//! `wasm-oci` command-line entry point: dispatch, output and exit codes.

use std::process::ExitCode;

use anyhow::{Context, Result};
use wasm_oci::build::{build_to_file, BuildOptions};
use wasm_oci::cli::{parse_args, Command, UsageError, USAGE};
use wasm_oci::image::Image;
use wasm_oci::inspect::inspect;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            eprintln!("wasm-oci: {err}\n(see 'wasm-oci --help')");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("wasm-oci: error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<()> {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| UsageError(format!("argument {a:?} is not valid UTF-8")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match parse_args(args)? {
        Command::Help => print!("{USAGE}"),
        Command::Build(opts) => {
            let image = build_to_file(&opts)?;
            print_summary(&opts, &image);
        }
        Command::Inspect(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let report =
                inspect(&bytes).with_context(|| format!("inspecting {}", path.display()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

fn print_summary(opts: &BuildOptions, image: &Image) {
    println!("wrote {}", opts.output.display());
    println!("  image     {} (wasi/wasm)", opts.name.full);
    println!("  manifest  {}", image.manifest.digest());
    println!("  config    {}", image.config.digest());
    println!(
        "  layer     {} ({} bytes)",
        image.layer.digest(),
        image.layer.bytes.len()
    );
}
