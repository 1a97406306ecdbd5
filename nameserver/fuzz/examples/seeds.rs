//! Writes the seed corpus: `cargo run --example seeds -- corpus` from nameserver/fuzz.
//! Existing files are left alone; seeds are named `seed-<what>` so they stand apart from what
//! the fuzzer adds.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for s in tfs_fuzz::seeds::all() {
        let dir = root.join(s.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{}", s.name)), &s.data)?;
    }
    Ok(())
}
