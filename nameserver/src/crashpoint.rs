//! Crash points for process tests. With `TFS_CRASH_AT=<name>` in its environment, the process
//! aborts when it reaches the step of that name, leaving its files exactly as a `kill -9` at that
//! instant would (no destructor runs, nothing is flushed). Production never sets the variable; each
//! point costs one load of a value read once and a comparison with `None`, so a point may sit on
//! a hot path too (a create's reply, server/client.rs `CREATE_COMMITTED`).

use std::sync::OnceLock;

/// Aborts the process here if `TFS_CRASH_AT` names this point.
pub fn reached(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var("TFS_CRASH_AT").ok()).as_deref() == Some(name) {
        eprintln!("crash point {name} reached: aborting as TFS_CRASH_AT asks");
        std::process::abort();
    }
}
