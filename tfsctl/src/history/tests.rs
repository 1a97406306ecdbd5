use super::*;
use crate::record::Kind;

fn ack(epoch: u64, sent_ms: u64, acked_ms: u64) -> Ack {
    Ack { kind: Kind::Create, block: sent_ms, epoch, seq: 0, sent_ms, acked_ms }
}

fn fault(kind: &str, t_ms: u64) -> Fault {
    Fault { kind: kind.into(), t_ms }
}

#[test]
fn disjoint_epochs_are_no_split_brain() {
    let acks = [ack(1, 100, 105), ack(1, 110, 115), ack(2, 900, 905), ack(2, 910, 920), ack(3, 2000, 2001)];
    let s = split_brain(&acks);
    assert_eq!(s, SplitBrain::default());
    let w = epoch_windows(&acks);
    assert_eq!(w.iter().map(|w| (w.epoch, w.acks)).collect::<Vec<_>>(), vec![(1, 2), (2, 2), (3, 1)]);
    assert_eq!((w[1].first_acked_ms, w[1].last_acked_ms, w[1].first_sent_ms, w[1].last_sent_ms), (905, 920, 900, 910));
}

#[test]
fn an_old_epoch_acknowledging_a_write_sent_after_a_newer_epochs_ack_is_split_brain() {
    // Epoch 2 acknowledged at 905; epoch 1 then acknowledged a write sent at 906.
    let acks = [ack(1, 100, 105), ack(2, 900, 905), ack(1, 906, 910), ack(2, 911, 915)];
    let s = split_brain(&acks);
    assert_eq!(s.certain, 1);
    assert_eq!(s.late, 0);
    assert_eq!(
        s.overlaps,
        vec![Overlap {
            older: 1,
            newer: 2,
            newer_first_acked_ms: 905,
            certain: 1,
            late: 0,
            last_sent_ms: 906,
            last_acked_ms: 910
        }]
    );
}

#[test]
fn an_old_ack_delivered_late_is_counted_apart_not_as_split_brain() {
    // Sent at 800 (before epoch 2 acknowledged anything at 905), received at 950: the old
    // master may have decided at 801 and the answer arrived late.
    let acks = [ack(1, 800, 950), ack(2, 900, 905)];
    let s = split_brain(&acks);
    assert_eq!((s.certain, s.late, s.max_late_ms), (0, 1, 45));
    // Equal times are not an overlap: ms resolution cannot order them.
    assert_eq!(split_brain(&[ack(1, 905, 905), ack(2, 900, 905)]), SplitBrain::default());
}

#[test]
fn any_newer_epoch_counts_not_only_the_next() {
    // Epoch 3 acknowledged first at 500, epoch 2 only at 700: epoch 1 writing at 600 overlaps 3.
    let acks = [ack(1, 100, 110), ack(3, 490, 500), ack(2, 690, 700), ack(1, 600, 605)];
    let s = split_brain(&acks);
    assert_eq!(s.certain, 2);
    assert_eq!((s.overlaps[0].older, s.overlaps[0].newer, s.overlaps[0].newer_first_acked_ms), (1, 3, 500));
    // Epoch 2 itself acknowledged after epoch 3: also an overlap.
    assert_eq!(s.overlaps.len(), 2);
    assert_eq!((s.overlaps[1].older, s.overlaps[1].newer, s.overlaps[1].certain), (2, 3, 1));
}

#[test]
fn longest_gap_over_sorted_times() {
    assert_eq!(longest_gap(&[]), None);
    assert_eq!(longest_gap(&[5]), None);
    assert_eq!(longest_gap(&[1, 2, 10, 11, 19]), Some(Gap { from_ms: 2, to_ms: 10 }), "the first of equal gaps");
}

#[test]
fn outage_per_fault_counts_from_the_fault_and_stops_at_the_next() {
    let acks = [
        ack(1, 0, 100),
        ack(1, 100, 200),
        ack(1, 999, 1001), // in flight when the fault came at 1000
        ack(2, 3000, 3500),
        ack(2, 3500, 3600),
        ack(2, 3600, 5000), // a slow write after the next fault (4000)
        ack(2, 5000, 5100),
    ];
    let o = fault_outages(&acks, &[fault("kill9", 1000), fault("heart", 4000)]);
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].outage, Gap { from_ms: 1001, to_ms: 3500 });
    assert_eq!(o[0].stalled_ms, 2499 + 400, "every gap of 250 ms or more: 1001-3500 and 3600-4000");
    assert_eq!((o[0].epoch_before, o[0].failover), (Some(1), Some((2, 2500))));
    assert!(o[0].recovered);
    assert_eq!(o[1].outage, Gap { from_ms: 4000, to_ms: 5000 });
    assert_eq!((o[1].epoch_before, o[1].failover), (Some(2), None));
}

#[test]
fn a_fault_never_recovered_from_runs_to_the_end() {
    let acks = [ack(1, 0, 100), ack(1, 100, 200)];
    let o = fault_outages(&acks, &[fault("apiserver-stop", 150), fault("kill9", 300)]);
    // The writes stopped after 200: the gap runs to the next fault.
    assert_eq!(o[0].outage, Gap { from_ms: 200, to_ms: 300 });
    assert!(o[0].recovered);
    assert_eq!(o[1].outage, Gap { from_ms: 300, to_ms: 300 });
    assert!(!o[1].recovered);
    assert_eq!(o[1].failover, None);
}

#[test]
fn kinds_summarize_outages() {
    let outages: Vec<FaultOutage> =
        [("kill9", 400, true), ("kill9", 600, true), ("kill9", 2000, true), ("heart", 50, false)]
            .iter()
            .enumerate()
            .map(|(i, &(k, ms, fo))| FaultOutage {
                index: i,
                kind: k.into(),
                t_ms: 0,
                outage: Gap { from_ms: 0, to_ms: ms },
                stalled_ms: ms * 2,
                recovered: true,
                epoch_before: Some(1),
                failover: fo.then_some((2, ms + 10)),
            })
            .collect();
    let k = by_kind(&outages);
    assert_eq!(k.len(), 2);
    assert_eq!((k[0].kind.as_str(), k[0].count, k[0].p50_ms, k[0].max_ms, k[0].failovers), ("heart", 1, 50, 50, 0));
    assert_eq!(k[0].failover_p50_ms, None);
    assert_eq!((k[1].kind.as_str(), k[1].count, k[1].p50_ms, k[1].max_ms, k[1].failovers), ("kill9", 3, 600, 2000, 3));
    assert_eq!(k[1].failover_p50_ms, Some(610));
    assert_eq!((k[1].stalled_p50_ms, k[1].stalled_max_ms), (1200, 4000));
    assert_eq!(percentile(&[4, 1, 3, 2], 0.5), Some(2));
    assert_eq!(percentile(&[], 0.5), None);
}

#[test]
fn fault_logs_keep_only_faults() {
    let text =
        "{\"i\":0,\"kind\":\"kill9\",\"t_ms\":20}\n{\"converged\":0,\"t_ms\":30}\n\n{\"kind\":\"heart\",\"t_ms\":10}\n";
    assert_eq!(parse_faults(text).unwrap(), vec![fault("heart", 10), fault("kill9", 20)]);
    assert!(parse_faults("not json").is_err());
}

#[test]
fn analysis_of_a_whole_history() {
    let acks = [ack(1, 0, 100), ack(1, 100, 200), ack(2, 1500, 1700), ack(2, 1700, 1800)];
    let h = analyze(&acks, &[fault("kill9", 250)]);
    assert_eq!(h.max_unavailable_ms(), 1500);
    assert_eq!(h.split_brain.certain, 0);
    assert_eq!(h.faults[0].outage.ms(), 1450);
    assert!(h.kind_table().contains("kill9"));
    assert_eq!(h.to_json()["max_unavailable_s"], 1.5);
}
