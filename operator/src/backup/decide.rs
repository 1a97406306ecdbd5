//! The TfsBackup state machine, pure: Pending → Running → Completed | Failed, with retries of a
//! master that cannot be reached. Final phases never change.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{BackupPhase, TfsBackupStatus, human_size};

/// Attempts to reach a master before the backup fails.
pub const MAX_ATTEMPTS: i32 = 5;

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The TfsNameserver does not exist (final).
    NameserverMissing(String),
    /// It has no spec.backup: there is no archive to write to (final).
    NoBackupSpec(String),
    /// No master, or it did not answer: tried again with back-off, up to MAX_ATTEMPTS.
    Unreachable(String),
    /// The master took it.
    Taken(Taken),
}

/// The master's reply (TakeBackupReply).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Taken {
    pub master: String,
    pub epoch: u64,
    pub seq: u64,
    pub bytes: u64,
    pub object: String,
    pub archived_seq: u64,
}

/// An Event to publish: Warning or not, reason, note.
pub type Note = (bool, &'static str, String);

/// The status to write, when to look again (None: never), and an Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub status: TfsBackupStatus,
    pub requeue: Option<Duration>,
    pub event: Option<Note>,
}

/// The first step of a new backup: Running, from now (None once started or done).
pub fn begin(prev: &TfsBackupStatus, now: &Time) -> Option<Next> {
    if prev.phase.is_some_and(|p| p != BackupPhase::Pending) {
        return None;
    }
    let status = TfsBackupStatus {
        phase: Some(BackupPhase::Running),
        message: Some("asking the master to take a backup".into()),
        started_at: Some(now.clone()),
        ..Default::default()
    };
    Some(Next { status, requeue: Some(Duration::ZERO), event: Some((false, "Started", "backup started".into())) })
}

/// Back-off before attempt `n + 1` (n ≥ 1): 2, 4, 8, 16 s.
pub fn backoff(n: i32) -> Duration {
    Duration::from_secs(1u64 << n.clamp(1, 5))
}

fn completed_condition(ok: bool, reason: &str, message: &str, now: &Time) -> Condition {
    Condition {
        type_: "Completed".into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: now.clone(),
    }
}

/// The step after an attempt of a Running backup (`prev` unchanged when it is final already).
pub fn decide(prev: &TfsBackupStatus, outcome: Outcome, now: &Time) -> Next {
    if prev.phase.is_some_and(BackupPhase::done) {
        return Next { status: prev.clone(), requeue: None, event: None };
    }
    let attempts = prev.attempts + 1;
    let fail = |reason: &'static str, why: String| {
        let mut s = prev.clone();
        s.phase = Some(BackupPhase::Failed);
        s.attempts = attempts;
        s.message = Some(why.clone());
        s.completed_at = Some(now.clone());
        s.conditions = vec![completed_condition(false, reason, &why, now)];
        Next { status: s, requeue: None, event: Some((true, "BackupFailed", why)) }
    };
    match outcome {
        Outcome::NameserverMissing(why) => fail("NameserverNotFound", why),
        Outcome::NoBackupSpec(why) => fail("NoBackupSpec", why),
        Outcome::Unreachable(why) if attempts >= MAX_ATTEMPTS => {
            fail("MasterUnreachable", format!("{why} (gave up after {attempts} attempts)"))
        }
        Outcome::Unreachable(why) => {
            let wait = backoff(attempts);
            let mut s = prev.clone();
            s.attempts = attempts;
            s.message =
                Some(format!("attempt {attempts} of {MAX_ATTEMPTS}: {why}; trying again in {}s", wait.as_secs()));
            Next { status: s, requeue: Some(wait), event: Some((true, "Retrying", why)) }
        }
        Outcome::Taken(x) => {
            let size = human_size(x.bytes);
            let note = format!(
                "{} took the backup at seq {} (epoch {}): {} in {} ({} bytes)",
                x.master, x.seq, x.epoch, x.object, size, x.bytes
            );
            let s = TfsBackupStatus {
                phase: Some(BackupPhase::Completed),
                message: Some(note.clone()),
                attempts,
                seq: Some(x.seq as i64),
                epoch: Some(x.epoch as i64),
                master: Some(x.master),
                size_bytes: Some(x.bytes as i64),
                size: Some(size),
                objects: vec![x.object],
                archived_seq: Some(x.archived_seq as i64),
                started_at: prev.started_at.clone(),
                completed_at: Some(now.clone()),
                conditions: vec![completed_condition(true, "Completed", &note, now)],
            };
            Next { status: s, requeue: None, event: Some((false, "Completed", note)) }
        }
    }
}

#[cfg(test)]
mod tests;
