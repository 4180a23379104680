//! `wasm-oci` command-line entry point: dispatch, output and exit codes.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use wasm_oci::build::{build_to_file, BuildOptions};
use wasm_oci::cli::{parse_args, Command, UsageError, USAGE};
use wasm_oci::image::Image;
use wasm_oci::inspect::inspect;
use wasm_oci::push::{push, PushReport};

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
    let output = match parse_args(args)? {
        Command::Help => USAGE.to_string(),
        Command::Build(opts) => summary(&opts, &build_to_file(&opts)?),
        Command::Inspect(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let report =
                inspect(&bytes).with_context(|| format!("inspecting {}", path.display()))?;
            format!("{}\n", serde_json::to_string_pretty(&report)?)
        }
        Command::Push(opts) => push_summary(&push(&opts)?),
    };
    // A reader that stops early (`| head`) is no error: the work is done.
    match std::io::stdout().lock().write_all(output.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn summary(opts: &BuildOptions, image: &Image) -> String {
    let platform = serde_json::from_slice::<serde_json::Value>(&image.index.bytes)
        .ok()
        .and_then(|i| {
            let p = &i["manifests"][0]["platform"];
            Some(format!(
                "{}/{}",
                p["os"].as_str()?,
                p["architecture"].as_str()?
            ))
        })
        .unwrap_or_default();
    format!(
        "wrote {}\n  {:<9} {} ({platform})\n  manifest  {}\n  config    {}\n  layer     {} ({} bytes)\n",
        opts.output.display(),
        opts.format.name(),
        opts.name.full,
        image.manifest.digest(),
        image.config.digest(),
        image.layer.digest(),
        image.layer.bytes.len()
    )
}

fn push_summary(report: &PushReport) -> String {
    let mut out = format!(
        "pushed {}\n  manifest  {}\n",
        report.reference, report.manifest_digest
    );
    for (what, digest, uploaded) in &report.blobs {
        let how = if *uploaded {
            "uploaded"
        } else {
            "already there"
        };
        out.push_str(&format!("  {what:<9} {digest} ({how})\n"));
    }
    out
}
