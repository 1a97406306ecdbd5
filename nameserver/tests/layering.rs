//! The nameserver's layers and their one-way arrows (docs/ARCHITECTURE.md, "Layers"), checked on
//! the source: every `crate::…` and `super::…` path in a file of `src/` (imports, and paths
//! written inline) names a module of the same layer or of a layer below it, never above.
//!
//! A file's layer, and a path's, is that of the longest module prefix of [`LAYERS`] it starts
//! with; a module in no layer fails the check, so a new module has to be placed. The item after
//! each `#[cfg(test)]` (a `mod tests;` line, or a block through its closing brace) and comments are
//! not read: tests may reach across, and what follows a test item is checked again.
//!
//! Apart from the layers: the disk format and the state machine it encodes ([`API_FREE`]) never
//! name the API's messages (`crate::proto`), so an API change cannot change what is on disk.
//!
//! Run: `cargo test -p tfs-nameserver --test layering`.

use std::path::{Path, PathBuf};

/// From the top down; each module prefix (`a::b`) in the layer that may use everything below.
const LAYERS: &[(&str, &[&str])] = &[
    // gRPC, HTTP and the process: maps protos and errors, calls what is below.
    ("server", &["server"]),
    // The rules of each API as functions over a writer transaction.
    ("ops", &["ops"]),
    // Shipping the log: to slaves (replication) and to object storage (the archiver).
    ("replication", &["replication", "archive::archiver"]),
    // The writer thread, group commit and the commit rule.
    ("engine", &["engine"]),
    // The state machine and what derives from it or describes it; the archive's objects, plans
    // and restore; the settings of each layer.
    ("state", &["state", "planning", "checkpoint", "mutation", "archive", "config"]),
    // Records and their messages (oplog::format, the disk format), segments, the log and its
    // in-memory tail.
    ("oplog", &["oplog"]),
    // Leaves every layer may use: messages, who this node is, metrics, TLS, crash points.
    ("base", &["proto", "epoch", "role", "metrics", "tls", "crashpoint", "logging"]),
];

/// Modules that never name the API's messages (`crate::proto`, package tfs.v1): the disk format
/// (`oplog::format`, package tfs.oplog.v1) and what encodes the state in it. The state layer's
/// archive is not among them: it reports its status in API messages.
const API_FREE: &[&str] = &["oplog", "state", "mutation", "checkpoint", "planning"];

/// Whether `module` starts with the module path `prefix` (`a::b`).
fn within(module: &[String], prefix: &str) -> bool {
    let p: Vec<&str> = prefix.split("::").collect();
    module.len() >= p.len() && module.iter().zip(&p).all(|(a, b)| a == b)
}

/// The rank of a module path (higher = further up), by its longest prefix in [`LAYERS`].
fn rank(module: &[String]) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    for (i, (name, prefixes)) in LAYERS.iter().enumerate() {
        for p in prefixes.iter() {
            let len = p.split("::").count();
            if within(module, p) && best.is_none_or(|(l, _, _)| len > l) {
                best = Some((len, LAYERS.len() - i, name));
            }
        }
    }
    best.map(|(_, r, n)| (r, n))
}

/// The module a file defines: `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if m.last().is_some_and(|s| s == "mod") {
        m.pop();
    }
    m
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module paths a line names, absolute: `crate::a::b` → `a::b`, `super::c` (in `a::b`) → `a::c`.
fn paths(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    for start in ["crate::", "super::"] {
        let mut rest = line;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().next_back();
            let after = &rest[i + start.len()..];
            rest = after;
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue; // `tfs_crate::` or `a::super::`: not a path from the root or parent
            }
            let mut base: Vec<String> =
                if start == "crate::" { Vec::new() } else { here[..here.len().saturating_sub(1)].to_vec() };
            let mut tail = after;
            while tail.starts_with("super::") {
                base.pop();
                tail = &tail["super::".len()..];
            }
            for seg in tail.split("::") {
                let ident: String = seg.chars().take_while(|&c| is_ident(c)).collect();
                if ident.is_empty() {
                    break;
                }
                let whole = ident.len() == seg.len();
                base.push(ident);
                if !whole {
                    break; // `a::f(crate::b)`: the path ends at `f`
                }
            }
            out.push(base);
        }
    }
    out
}

/// Skips the item a `#[cfg(test)]` stands on (`rest`: what follows the attribute on its line):
/// further attributes, then the item through its `;` (`mod tests;`, `use …;`) or through the brace
/// that closes its block (braces counted, which holds for this crate's code: no `'{'` literal).
fn skip_item<'a>(rest: &'a str, lines: &mut impl Iterator<Item = (usize, &'a str)>) {
    let mut depth = 0i64;
    let mut opened = false;
    for code in std::iter::once(rest).chain(lines.map(|(_, l)| l)) {
        let code = code.trim();
        if code.is_empty() || code.starts_with("//") || (!opened && code.starts_with("#[")) {
            continue;
        }
        for c in code.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if (opened && depth <= 0) || (!opened && code.ends_with(';')) {
            return;
        }
    }
}

#[test]
fn imports_run_one_way_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let mut wrong = Vec::new();
    for file in all.iter().filter(|f| !f.starts_with(src.join("bin")) && !f.ends_with("lib.rs")) {
        let here = module_of(&src, file);
        if here.iter().any(|m| m == "tests") {
            continue; // a test module in its own file
        }
        let Some((from, from_name)) = rank(&here) else {
            wrong.push(format!(
                "{}: module {} is in no layer (tests/layering.rs LAYERS)",
                file.display(),
                here.join("::")
            ));
            continue;
        };
        let api_free = API_FREE.iter().any(|p| within(&here, p));
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines = text.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let code = line.trim_start();
            if let Some(rest) = code.strip_prefix("#[cfg(test)]") {
                skip_item(rest, &mut lines);
                continue;
            }
            if code.starts_with("//") {
                continue;
            }
            for target in paths(line, &here) {
                if api_free && within(&target, "proto") {
                    wrong.push(format!(
                        "{}:{}: {} names the API's messages: {} (the disk format is oplog::format)",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        here.join("::"),
                        target.join("::")
                    ));
                }
                let Some((to, to_name)) = rank(&target) else { continue };
                if to > from {
                    wrong.push(format!(
                        "{}:{}: {from_name} → {to_name}: {}",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        target.join("::")
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers (server → ops → replication → engine → state → oplog → base), or of the API \
         where the disk format is encoded:\n{}",
        wrong.join("\n")
    );
}
