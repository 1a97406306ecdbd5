#!/usr/bin/env bash
# Failover time on the local cluster, >= 20 trials of each kind (kill -9 of the master's
# nameserver, force-delete of the master pod, planned switchover), interleaved. Writes results.json
# "failover". Needs the cluster and the image: `make bench` starts both.
set -euo pipefail
BENCH_NAME=failover
source "$(dirname "$0")/lib.sh"
export KUBECONFIG="$ROOT/.e2e/kubeconfig"
"$E2E_BIN/kubectl" apply -f "$ROOT/examples/storageclass-local.yaml" >/dev/null
OUT=$(mktemp /tmp/tfs-failover.XXXX.json)
trap 'rm -f "$OUT"' EXIT
log "${BENCH_FAILOVER_TRIALS:-20} trials of each kind"
"$B/failover-bench" --trials "${BENCH_FAILOVER_TRIALS:-20}" --out "$OUT" >&2
put_result failover "$(cat "$OUT")"
