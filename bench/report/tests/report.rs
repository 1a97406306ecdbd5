//! The report end to end on a fixture of fake figures: plots written, blocks regenerated, the
//! command line's exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

use tfs_bench_report::markdown::{NAMES, close_marker, open_marker, replace_blocks};
use tfs_bench_report::plots::{DEFAULT_FONT, load_font, write_all};
use tfs_bench_report::results::Results;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json")
}

fn bench_report() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bench-report"))
}

/// Runs the report on the fixture, writing `doc` and the plots into `plots`.
fn report_into(doc: &Path, plots: &Path) -> std::process::Output {
    bench_report().arg("--results").arg(fixture()).arg("--docs").arg(doc).arg("--plots").arg(plots).output().unwrap()
}

#[test]
fn plots_are_written_as_svg_and_png() {
    let results = Results::load(&fixture()).unwrap();
    load_font(Path::new(DEFAULT_FONT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plots = dir.path().join("bench");
    let written = write_all(&results, &plots).unwrap();
    assert!(written.notes.is_empty(), "{:?}", written.notes);
    for stem in ["writes_throughput", "writes_p99", "failover", "recovery"] {
        let svg = std::fs::read_to_string(plots.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{stem}.svg is not an SVG document");
        assert!(svg.contains("<text"), "{stem}.svg has no text");
        let png = std::fs::read(plots.join(format!("{stem}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{stem}.png is not a PNG");
    }
    assert_eq!(written.files.len(), 8);
}

#[test]
fn plots_of_sections_absent_are_not_written() {
    let results = Results::parse(r#"{"catch_up": {"records": 10, "seconds": 1}}"#).unwrap();
    load_font(Path::new(DEFAULT_FONT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = write_all(&results, dir.path()).unwrap();
    assert!(written.files.is_empty());
    assert_eq!(written.notes.len(), 3);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn doc_with_every_block() -> String {
    let mut doc = String::from("# Benchmarks\n\nNarrative kept as it is.\n\n");
    for name in NAMES {
        doc.push_str(&format!(
            "## {name}\n\n{}\nplaceholder\n{}\n\nText after {name}.\n\n",
            open_marker(name),
            close_marker(name)
        ));
    }
    doc
}

#[test]
fn the_command_regenerates_the_document_and_the_plots() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let doc_path = docs.join("BENCHMARKS.md");
    std::fs::write(&doc_path, doc_with_every_block()).unwrap();
    let out = report_into(&doc_path, &docs.join("bench"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("tfs_vs_etcd3_write_ratio="), "{stdout}");
    assert!(stdout.contains("\ntarget_switchover="), "{stdout}");

    let doc = std::fs::read_to_string(&doc_path).unwrap();
    assert!(!doc.contains("placeholder"), "{doc}");
    for name in NAMES {
        assert!(doc.contains(&format!("Text after {name}.")));
    }
    assert!(doc.contains("![Write throughput vs concurrency](bench/writes_throughput.svg)"), "{doc}");
    assert!(doc.contains("| CPU | FIXTURE CPU"), "{doc}");
    assert!(doc.contains("| median | 20,000 | 19,000 | **0.950** |"), "{doc}");
    assert!(stdout.contains("\ntfs_archive_cost_ratio=0.950 "), "{stdout}");
    assert!(docs.join("bench/recovery.png").exists());

    // A second run changes nothing.
    assert!(report_into(&doc_path, &docs.join("bench")).status.success());
    assert_eq!(std::fs::read_to_string(&doc_path).unwrap(), doc);
}

#[test]
fn a_broken_document_fails_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("BENCHMARKS.md");
    let text = format!("intro\n{}\nno end\n", open_marker("writes"));
    std::fs::write(&doc, &text).unwrap();
    let out = report_into(&doc, &dir.path().join("bench"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never closed"), "{stderr}");
    assert!(!dir.path().join("bench").exists());
    assert_eq!(std::fs::read_to_string(&doc).unwrap(), text);
}

#[test]
fn check_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_report()
        .arg("--results")
        .arg(fixture())
        .arg("--docs")
        .arg(dir.path().join("absent.md"))
        .arg("--plots")
        .arg(dir.path().join("plots"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn malformed_results_fail_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.json");
    std::fs::write(&results, r#"{"catch_up": {"records": "many", "seconds": 1}}"#).unwrap();
    let out = bench_report().arg("--results").arg(&results).arg("--check").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("catch_up.records"), "{stderr}");
}

#[test]
fn the_benchmarks_document_has_well_formed_blocks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let kept = replace_blocks(&doc, &Default::default()).unwrap();
    assert_eq!(kept.text, doc);
    for name in NAMES {
        assert!(doc.contains(&open_marker(name)), "docs/BENCHMARKS.md has no {name} block");
    }
}
