//! The generated blocks of a markdown document, and markdown tables.
//!
//! A block is the lines between `<!-- bench-report:NAME -->` and `<!-- /bench-report:NAME -->`,
//! each marker alone on its line. Replacing blocks keeps every byte outside them, the marker
//! lines included. Blocks do not nest; a block left open, a closing marker without its opening
//! one, an unknown name or a name used twice is an error that gives the line.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

/// The blocks the report writes.
pub const NAMES: [&str; 7] = ["machine", "writes", "failover", "recovery", "tls", "backup", "summary"];

const OPEN: &str = "<!-- bench-report:";
const CLOSE: &str = "<!-- /bench-report:";
const END: &str = "-->";

/// The opening marker of block `name`, as it stands in the document.
pub fn open_marker(name: &str) -> String {
    format!("{OPEN}{name} {END}")
}

/// The closing marker of block `name`.
pub fn close_marker(name: &str) -> String {
    format!("{CLOSE}{name} {END}")
}

#[derive(Debug)]
pub struct Replaced {
    pub text: String,
    /// Blocks that had new content but no place in the document.
    pub warnings: Vec<String>,
}

#[derive(Debug, PartialEq)]
enum Marker<'a> {
    Open(&'a str),
    Close(&'a str),
}

fn marker(line: &str) -> Option<Marker<'_>> {
    let line = line.trim();
    let inner = line.strip_suffix(END)?;
    if let Some(name) = inner.strip_prefix(CLOSE) {
        Some(Marker::Close(name.trim()))
    } else {
        inner.strip_prefix(OPEN).map(|name| Marker::Open(name.trim()))
    }
}

/// `doc` with the content of each block named in `blocks` replaced. A block of the document that
/// `blocks` does not name keeps its content. A name of `blocks` that the document has no block
/// for is written nowhere and gives a warning.
pub fn replace_blocks(doc: &str, blocks: &BTreeMap<&str, String>) -> Result<Replaced> {
    let mut out = String::with_capacity(doc.len());
    let mut seen = BTreeSet::new();
    // The open block: its name, the line it opened at, and its old content.
    let mut open: Option<(&str, usize, String)> = None;
    for (i, line) in doc.split_inclusive('\n').enumerate() {
        let n = i + 1;
        match (marker(line), &mut open) {
            (Some(Marker::Open(name)), None) => {
                if !NAMES.contains(&name) {
                    bail!("line {n}: unknown block name {name:?} (known: {})", NAMES.join(", "));
                }
                if !seen.insert(name) {
                    bail!("line {n}: a second block {name}");
                }
                out.push_str(line);
                open = Some((name, n, String::new()));
            }
            (Some(Marker::Open(name)), Some((outer, at, _))) => {
                bail!("line {n}: block {name} opens inside block {outer} (opened at line {at}): blocks do not nest")
            }
            (Some(Marker::Close(name)), None) => bail!("line {n}: block {name} closes but was never opened"),
            (Some(Marker::Close(name)), Some((outer, at, old))) => {
                if name != *outer {
                    bail!("line {n}: block {name} closes while block {outer} (opened at line {at}) is open");
                }
                match blocks.get(name) {
                    // A blank line either side keeps the markers out of the content's markdown.
                    Some(new) if !new.is_empty() => {
                        out.push('\n');
                        out.push_str(new);
                        if !new.ends_with('\n') {
                            out.push('\n');
                        }
                        out.push('\n');
                    }
                    Some(_) => {}
                    None => out.push_str(old),
                }
                out.push_str(line);
                open = None;
            }
            (None, Some((_, _, old))) => old.push_str(line),
            (None, None) => out.push_str(line),
        }
    }
    if let Some((name, at, _)) = open {
        bail!("block {name} opened at line {at} is never closed ({} missing)", close_marker(name));
    }
    let warnings = blocks
        .keys()
        .filter(|name| !seen.contains(*name))
        .map(|name| format!("the document has no {} block: {name} not written", open_marker(name)))
        .collect();
    Ok(Replaced { text: out, warnings })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A markdown table. A `|` in a cell is escaped.
pub fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let row = |cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = row(&mut header.iter().map(|(h, _)| h.to_string()));
    let rules: Vec<&str> = header
        .iter()
        .map(|(_, a)| match a {
            Align::Left => "---",
            Align::Right => "---:",
        })
        .collect();
    out.push_str(&format!("|{}|\n", rules.join("|")));
    for r in rows {
        assert_eq!(r.len(), header.len(), "a table row has {} cells for {} columns", r.len(), header.len());
        out.push_str(&row(&mut r.iter().cloned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    const DOC: &str = "# Title\r\n\nIntro  with  spaces \n<!-- bench-report:writes -->\nold table\nold line\n\
                       <!-- /bench-report:writes -->\nmiddle\n  <!-- bench-report:summary -->\nold summary\n\
                       <!-- /bench-report:summary -->\nend without newline";

    #[test]
    fn content_is_replaced_and_everything_else_kept() {
        let r = replace_blocks(DOC, &blocks(&[("writes", "| a |\n|---|\n"), ("summary", "S")])).unwrap();
        assert_eq!(
            r.text,
            "# Title\r\n\nIntro  with  spaces \n<!-- bench-report:writes -->\n\n| a |\n|---|\n\n\
             <!-- /bench-report:writes -->\nmiddle\n  <!-- bench-report:summary -->\n\nS\n\n\
             <!-- /bench-report:summary -->\nend without newline"
        );
        assert!(r.warnings.is_empty());
        // Replacing again gives the same text.
        let again = replace_blocks(&r.text, &blocks(&[("writes", "| a |\n|---|\n"), ("summary", "S")])).unwrap();
        assert_eq!(again.text, r.text);
    }

    #[test]
    fn a_block_without_new_content_is_kept() {
        let r = replace_blocks(DOC, &blocks(&[("summary", "S\n")])).unwrap();
        assert!(r.text.contains("old table\nold line\n"));
        assert!(!r.text.contains("old summary"));
        assert_eq!(replace_blocks(DOC, &BTreeMap::new()).unwrap().text, DOC);
    }

    #[test]
    fn a_missing_block_warns_and_appends_nothing() {
        let r = replace_blocks(DOC, &blocks(&[("failover", "F\n"), ("writes", "W\n")])).unwrap();
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("<!-- bench-report:failover -->"), "{:?}", r.warnings);
        assert!(!r.text.contains("F\n"));
        assert!(r.text.ends_with("end without newline"));
    }

    #[test]
    fn a_marker_in_prose_is_not_a_marker() {
        let doc = "Blocks look like `<!-- bench-report:writes -->` in the source.\n";
        assert_eq!(replace_blocks(doc, &blocks(&[("writes", "W")])).unwrap().text, doc);
    }

    fn error(doc: &str) -> String {
        replace_blocks(doc, &blocks(&[("writes", "W")])).unwrap_err().to_string()
    }

    #[test]
    fn nested_unterminated_and_stray_markers_are_errors() {
        let e = error("<!-- bench-report:writes -->\n<!-- bench-report:summary -->\n<!-- /bench-report:summary -->\n");
        assert!(e.contains("line 2") && e.contains("nest"), "{e}");
        let e = error("a\n<!-- bench-report:writes -->\nx\n");
        assert!(e.contains("line 2") && e.contains("never closed"), "{e}");
        let e = error("<!-- /bench-report:writes -->\n");
        assert!(e.contains("line 1") && e.contains("never opened"), "{e}");
        let e = error("<!-- bench-report:writes -->\n<!-- /bench-report:summary -->\n");
        assert!(e.contains("line 2") && e.contains("while block writes"), "{e}");
        let e = error("<!-- bench-report:plots -->\n<!-- /bench-report:plots -->\n");
        assert!(e.contains("unknown block name \"plots\""), "{e}");
        let e = error("<!-- bench-report:writes -->\n<!-- /bench-report:writes -->\n<!-- bench-report:writes -->\n");
        assert!(e.contains("line 3") && e.contains("second block writes"), "{e}");
    }

    #[test]
    fn markers_are_what_the_report_looks_for() {
        assert_eq!(marker(&open_marker("writes")), Some(Marker::Open("writes")));
        assert_eq!(marker(&close_marker("writes")), Some(Marker::Close("writes")));
        assert_eq!(marker("<!-- other comment -->"), None);
    }

    #[test]
    fn tables() {
        let t = table(
            &[("system", Align::Left), ("ops/s", Align::Right)],
            &[vec!["tfs".into(), "1,000".into()], vec!["a|b".into(), "2".into()]],
        );
        assert_eq!(t, "| system | ops/s |\n|---|---:|\n| tfs | 1,000 |\n| a\\|b | 2 |\n");
    }
}
