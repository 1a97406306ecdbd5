#!/usr/bin/env bash
# Failover time on the local cluster, >= 20 trials of each kind (kill -9 of the master's
# nameserver, force-delete of the master pod, planned switchover), interleaved; then >= 10 trials
# of each node loss (the master's node, with the operator's leader elsewhere / on it) with three
# instances, one per node. Writes results.json "failover" (all trials; the node-loss run's
# settings under "node_loss"). Needs the cluster and the image: `make bench` starts both.
set -euo pipefail
BENCH_NAME=failover
source "$(dirname "$0")/lib.sh"
export KUBECONFIG="$ROOT/.e2e/kubeconfig"
"$E2E_BIN/kubectl" apply -f "$ROOT/examples/storageclass-local.yaml" >/dev/null
OUT=$(mktemp /tmp/tfs-failover.XXXX.json)
NODES_OUT=$(mktemp /tmp/tfs-failover-nodes.XXXX.json)
trap 'rm -f "$OUT" "$NODES_OUT"' EXIT
log "${BENCH_FAILOVER_TRIALS:-20} trials of each kind"
"$B/failover-bench" --trials "${BENCH_FAILOVER_TRIALS:-20}" --out "$OUT" >&2
log "${BENCH_NODELOSS_TRIALS:-10} node-loss trials of each kind"
"$B/failover-bench" --kinds nodeloss,nodeloss-leader --replicas 3 --trials "${BENCH_NODELOSS_TRIALS:-10}" --out "$NODES_OUT" >&2
put_result failover "$(jq -s '.[0] + {trials: (.[0].trials + .[1].trials), node_loss: (.[1] | del(.trials))}' "$OUT" "$NODES_OUT")"
