//! Made-up results for the unit tests.

use super::{ArchiveCost, ArchiveLag, Backup, Restore, WritePoint};

/// A point of 100 requests, p50 1 ms, none failed.
pub(crate) fn point(system: &str, concurrency: u32, ops_per_s: f64, p99_ms: f64) -> WritePoint {
    WritePoint {
        system: system.into(),
        concurrency,
        count: 100,
        ops_per_s,
        p50_ms: 1.0,
        p99_ms,
        failed: 0,
        rounds_ops_per_s: vec![],
    }
}

/// The sample of bench/backup.sh's section, with the judged figures given (the restore opens in 3.2 s).
pub(crate) fn backup(ratio: f64, lag_p99_s: Option<f64>, blocks: u64, total_s: f64) -> Backup {
    Backup {
        cost: ArchiveCost {
            concurrency: 256,
            rounds: 3,
            off_ops_per_s: vec![35763.4, 36590.0, 33113.5],
            on_ops_per_s: vec![35907.2, 33930.7, 34318.3],
            ratio_on_off: ratio,
        },
        lag: ArchiveLag {
            rate_target: 5000.0,
            ops_per_s: 4999.7,
            failed: 0,
            samples: 278,
            lag_p50_s: Some(0.513),
            lag_p99_s,
            lag_max_s: Some(1.001),
            archive_timeout_s: 1.0,
        },
        restore: Restore {
            blocks,
            seq: 10_000_300,
            checkpoint_seq: 9_000_100,
            checkpoint_bytes: 114_891_136,
            log_records: 1_000_200,
            restore_s: total_s - 3.2,
            open_s: 3.2,
            total_s,
        },
    }
}
