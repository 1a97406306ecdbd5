//! Heal guards: every fault that leaves something broken (a stopped process, iptables rules, a
//! running writer) registers how to undo it. The undo runs exactly once: when the guard is
//! healed or dropped (also while a panic unwinds), or from `heal_all` (the panic hook and the
//! Ctrl-C/SIGTERM handler), so an interrupted run never leaves the cluster broken.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

type Action = Box<dyn FnOnce() + Send>;
type Slot = Arc<Mutex<Option<Action>>>;

fn pending() -> &'static Mutex<BTreeMap<u64, (String, Slot)>> {
    static P: OnceLock<Mutex<BTreeMap<u64, (String, Slot)>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Undoes a fault when healed or dropped.
#[must_use = "dropping a Heal undoes the fault at once"]
pub struct Heal {
    id: u64,
    what: String,
    slot: Slot,
}

impl Heal {
    pub fn new(what: impl Into<String>, undo: impl FnOnce() + Send + 'static) -> Heal {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let what = what.into();
        let slot: Slot = Arc::new(Mutex::new(Some(Box::new(undo))));
        pending().lock().unwrap_or_else(|e| e.into_inner()).insert(id, (what.clone(), slot.clone()));
        Heal { id, what, slot }
    }

    /// Nothing to undo (a kill: the system heals itself).
    pub fn nothing() -> Heal {
        Heal::new("nothing", || {})
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// Undoes the fault now.
    pub fn heal(self) {
        drop(self)
    }
}

fn take_and_run(slot: &Slot) {
    let action = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(a) = action {
        a();
    }
}

impl Drop for Heal {
    fn drop(&mut self) {
        pending().lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        take_and_run(&self.slot);
    }
}

/// Sends a signal, quietly: the process may be gone already.
pub fn quiet_signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Undoes every fault still in effect, newest first; returns what it healed.
pub fn heal_all() -> Vec<String> {
    let all: Vec<(String, Slot)> = {
        let mut p = pending().lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *p).into_values().rev().collect()
    };
    let mut healed = Vec::new();
    for (what, slot) in all {
        if slot.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            take_and_run(&slot);
            healed.push(what);
        }
    }
    healed
}

/// Heals everything before a panic is reported, and on Ctrl-C or SIGTERM, then exits 130.
pub fn install_handlers() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let healed = heal_all();
        if !healed.is_empty() {
            eprintln!("chaos: panic: healed {}", healed.join(", "));
        }
        prev(info)
    }));
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let healed = heal_all();
        eprintln!(
            "chaos: interrupted; healed: {}",
            if healed.is_empty() { "nothing".into() } else { healed.join(", ") }
        );
        std::process::exit(130);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn undo_runs_once_on_heal_drop_or_heal_all() {
        let n = Arc::new(AtomicUsize::new(0));
        let count = |n: &Arc<AtomicUsize>| {
            let n = n.clone();
            move || {
                n.fetch_add(1, Ordering::SeqCst);
            }
        };
        Heal::new("a", count(&n)).heal();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        {
            let _g = Heal::new("b", count(&n));
        }
        assert_eq!(n.load(Ordering::SeqCst), 2);
        let g = Heal::new("c", count(&n));
        let healed = heal_all();
        assert!(healed.contains(&"c".to_string()), "{healed:?}");
        assert_eq!(n.load(Ordering::SeqCst), 3);
        drop(g); // already undone: not again
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }
}
