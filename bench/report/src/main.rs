//! `bench-report [--results bench/results.json] [--docs docs/BENCHMARKS.md] [--plots docs/bench] [--check]`
//!
//! Prints one summary line per figure and each target's PASS or FAIL on stdout, notes and
//! warnings on stderr; without `--check` also writes the plots and the generated blocks of the
//! document. Exits non-zero only when the input is malformed or a file cannot be written: a
//! failed target is reported, not an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tfs_bench_report::{blocks, markdown, plots, results::Results, summary::Summary};

#[derive(Parser)]
#[command(name = "bench-report", about = "Summary lines, tables and plots from the benchmark results")]
struct Args {
    /// The results `make bench` wrote.
    #[arg(long, default_value = "bench/results.json")]
    results: PathBuf,
    /// The document whose generated blocks are rewritten.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    docs: PathBuf,
    /// Where the plots go (SVG and PNG).
    #[arg(long, default_value = "docs/bench")]
    plots: PathBuf,
    /// The font for the plots' text.
    #[arg(long, default_value = plots::DEFAULT_FONT)]
    font: PathBuf,
    /// Only print the summary: write neither plots nor the document.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let results = Results::load(&args.results)?;
    let summary = Summary::of(&results);
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    for line in summary.stdout_lines() {
        println!("{line}");
    }
    if args.check {
        return Ok(());
    }

    // A broken document or a missing font fails before anything is written.
    let doc = std::fs::read_to_string(&args.docs).with_context(|| format!("reading {}", args.docs.display()))?;
    let broken = || format!("{} has broken markers", args.docs.display());
    markdown::replace_blocks(&doc, &Default::default()).with_context(broken)?;
    plots::load_font(&args.font)?;
    let written = plots::write_all(&results, &args.plots)?;
    for note in &written.notes {
        eprintln!("note: {note}");
    }
    for file in &written.files {
        eprintln!("wrote {}", file.display());
    }

    let link = link_dir(&args.docs, &args.plots)?;
    let new = blocks::all(&results, &summary, Some(&link));
    for name in markdown::NAMES {
        if !new.contains_key(name) {
            eprintln!("note: no data for block {name}: kept as it was");
        }
    }
    let replaced = markdown::replace_blocks(&doc, &new).with_context(broken)?;
    for w in &replaced.warnings {
        eprintln!("warning: {}: {w}", args.docs.display());
    }
    if replaced.text != doc {
        std::fs::write(&args.docs, &replaced.text).with_context(|| format!("writing {}", args.docs.display()))?;
        eprintln!("wrote {}", args.docs.display());
    }
    Ok(())
}

/// The plot directory as the document links it: relative to the document's own directory.
fn link_dir(doc: &Path, plots: &Path) -> Result<String> {
    let doc_dir = doc.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let doc_dir = doc_dir.canonicalize().with_context(|| format!("resolving {}", doc_dir.display()))?;
    let plots_abs = plots.canonicalize().with_context(|| format!("resolving {}", plots.display()))?;
    let Ok(rel) = plots_abs.strip_prefix(&doc_dir) else {
        eprintln!(
            "warning: {} is not below {}: the document links the plots by their absolute path",
            plots.display(),
            doc_dir.display()
        );
        return Ok(plots_abs.display().to_string());
    };
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Ok(if parts.is_empty() { ".".to_string() } else { parts.join("/") })
}
