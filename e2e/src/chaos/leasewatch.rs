//! Watches the heartbeat Lease for the whole run and judges every promotion against the Lease
//! version just before it: in sync mode only the old master or a slave of the sync set its heart
//! had *published* may take over (docs/ARCHITECTURE.md, failover.rs). Every change seen is
//! logged as a JSON line.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tfs_operator::lease::Epoch;
use tfs_operator::lease::LeaseView;

use crate::now_ms;

/// What a change of the Lease says about the promotion rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The epoch did not change.
    NoPromotion,
    /// A promotion the rule allows.
    Legal,
    /// A promotion the rule forbids, or an epoch going back.
    Illegal(String),
    /// Versions in between were not seen (the watch restarted): cannot judge.
    Unverified(String),
}

/// Judges the change from `prev` to `next`, consecutive versions of the Lease.
pub fn judge(prev: &LeaseView, next: &LeaseView) -> Verdict {
    let (a, b) = (prev.epoch, next.epoch);
    if b == a {
        return Verdict::NoPromotion;
    }
    if b < a {
        return Verdict::Illegal(format!("epoch went back from {a} to {b}"));
    }
    if b > a.next() {
        return Verdict::Unverified(format!("epoch jumped from {a} to {b}: versions in between not seen"));
    }
    let who = &next.holder;
    let allowed = a == Epoch::ZERO
        || *who == prev.holder
        || prev.released_by.as_ref() == Some(who)
        || prev.sync_set.contains(who)
        || prev.handover_to.as_ref() == Some(who);
    if allowed {
        Verdict::Legal
    } else {
        Verdict::Illegal(format!(
            "{who} promoted at epoch {b}, but the published sync set was [{}] and the old master {}",
            prev.sync_set.join(", "),
            if prev.holder.is_empty() { prev.released_by.as_deref().unwrap_or("unknown") } else { &prev.holder }
        ))
    }
}

#[derive(Debug, Default)]
pub struct Seen {
    pub promotions: u64,
    pub illegal: Vec<String>,
    pub unverified: Vec<String>,
}

pub struct LeaseWatch {
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseWatch {
    pub fn start(leases: Api<Lease>, name: &str, log: &Path) -> Result<LeaseWatch> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(log)?);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut prev: Option<LeaseView> = None;
            let mut stream = watcher(leases, cfg).default_backoff().boxed();
            while let Some(ev) = stream.next().await {
                let l = match ev {
                    Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => l,
                    Ok(watcher::Event::Init) => {
                        // A fresh list: what changed meanwhile was not seen one version at a time.
                        if let Some(p) = prev.as_mut() {
                            p.resource_version = "relisted".into();
                        }
                        continue;
                    }
                    _ => continue,
                };
                let next = LeaseView::of(&l);
                let verdict = match &prev {
                    Some(p) if p.resource_version == "relisted" && p.epoch != next.epoch => Verdict::Unverified(
                        format!("the watch restarted while the epoch moved from {} to {}", p.epoch, next.epoch),
                    ),
                    Some(p) => judge(p, &next),
                    None => Verdict::NoPromotion,
                };
                let line = serde_json::json!({
                    "t_ms": now_ms(), "holder": next.holder, "epoch": next.epoch,
                    "sync_set": next.sync_set, "released_by": next.released_by, "release_reason": next.release_reason,
                    "verdict": format!("{verdict:?}"),
                });
                let _ = writeln!(out, "{line}").and_then(|_| out.flush());
                {
                    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                    match verdict {
                        Verdict::NoPromotion => {}
                        Verdict::Legal => g.promotions += 1,
                        Verdict::Illegal(why) => {
                            eprintln!("chaos: ILLEGAL PROMOTION: {why}");
                            g.promotions += 1;
                            g.illegal.push(why);
                        }
                        Verdict::Unverified(why) => {
                            g.promotions += 1;
                            g.unverified.push(why);
                        }
                    }
                }
                prev = Some(next);
            }
        });
        Ok(LeaseWatch { seen, task })
    }
}

impl Drop for LeaseWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: &str, epoch: u64, sync: &[&str]) -> LeaseView {
        LeaseView {
            holder: holder.into(),
            epoch: Epoch(epoch),
            sync_set: sync.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn promotions_are_judged_against_the_version_before() {
        let renewed = view("d-0", 3, &["d-1"]);
        assert_eq!(judge(&renewed, &view("d-0", 3, &[])), Verdict::NoPromotion);
        // The published sync set held the slave: legal.
        assert_eq!(judge(&renewed, &view("d-1", 4, &[])), Verdict::Legal);
        // It did not: the slave may lack acknowledged writes.
        let alone = view("d-0", 3, &[]);
        assert!(matches!(judge(&alone, &view("d-1", 4, &[])), Verdict::Illegal(w) if w.contains("sync set")));
        // The old master taking its Lease back at a new epoch is always safe.
        assert_eq!(judge(&alone, &view("d-0", 4, &[])), Verdict::Legal);
        let mut released = view("", 3, &[]);
        released.released_by = Some("d-0".into());
        assert_eq!(judge(&released, &view("d-0", 4, &[])), Verdict::Legal);
        assert!(matches!(judge(&released, &view("d-1", 4, &[])), Verdict::Illegal(_)));
        // The first master, an epoch going back, versions not seen.
        assert_eq!(judge(&view("", 0, &[]), &view("d-1", 1, &[])), Verdict::Legal);
        assert!(matches!(judge(&renewed, &view("d-1", 2, &[])), Verdict::Illegal(_)));
        assert!(matches!(judge(&renewed, &view("d-1", 5, &[])), Verdict::Unverified(_)));
    }
}
