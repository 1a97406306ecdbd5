#!/usr/bin/env bash
# What TLS on every hop costs the replicated write path: master + sync slave (fsync on both),
# creates at concurrency 256 and at a fixed rate (latency), plain and TLS in alternation, ROUNDS
# times (BENCH_TLS_ROUNDS, default 4), each run on fresh processes and data. TLS = clients and
# simulated dataservers to the master with client certificates, master <-> slave mutual. Pairs
# taken side by side keep the machine's drift out of the ratio; the median of the pairs is the
# figure. Writes results.json "tls_cost".
set -euo pipefail
BENCH_NAME=tls
source "$(dirname "$0")/lib.sh"
W=$(workdir)
trap 'pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true; rm -rf "$W"' EXIT
N=${BENCH_COUNT:-200000}
ROUNDS=${BENCH_TLS_ROUNDS:-4}
"$B/tfsctl" dev-certs --dir "$W/certs" --nodes m,s,bench --san 127.0.0.1,127.0.0.2 >/dev/null

# one_run DIR CERTS RATE: a fresh pair, creates at c=256, then at RATE/s (0: no paced run).
one_run() {
  local dir=$1 rate=$3 full paced=null
  export TLS_CERTS=$2
  mkdir -p "$dir"
  master_with_sync_slave "$dir"
  full=$(tfs_bench 127.0.0.1:8100 --op create --count "$N" --concurrency 256 --sim-dataservers 3)
  if [ "$rate" -gt 0 ]; then
    paced=$(tfs_bench 127.0.0.1:8100 --op create --count $((rate * 8)) --concurrency 256 --sim-dataservers 3 --rate "$rate")
  fi
  [ "$(status_field 127.0.0.1:8100 sync_set)" != "[]" ] || die "the slave left the sync set during the run"
  ns_stop "$dir" s; ns_stop "$dir" m
  rm -rf "$dir"
  echo "{\"create\": $full, \"create_paced\": $paced}"
}

# The paced rate: half of what a first plain run makes (a load both can carry).
warm=$(one_run "$W/warm" "" 0)
rate=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['create']['ops_per_s'] / 2))" "$warm")
runs="[]"
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS: plain, then TLS (creates at c=256, then $rate/s)"
  plain=$(one_run "$W/plain$r" "" "$rate")
  tls=$(one_run "$W/tls$r" "$W/certs" "$rate")
  runs=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); r.append({'plain': json.loads(sys.argv[2]), 'tls': json.loads(sys.argv[3])}); print(json.dumps(r))" "$runs" "$plain" "$tls")
done
put_result tls_cost "{\"rate\": $rate, \"rounds\": $runs}"
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
t = json.load(open(sys.argv[1]))["tls_cost"]
ratios = [r["tls"]["create"]["ops_per_s"] / r["plain"]["create"]["ops_per_s"] for r in t["rounds"]]
med = lambda k, sub, f: statistics.median(r[k][sub][f] for r in t["rounds"])
print(f"tls_cost rounds={len(ratios)} throughput_ratio_median={statistics.median(ratios):.3f} per_round=[{', '.join(f'{x:.3f}' for x in ratios)}]"
      f" ops plain={med('plain','create','ops_per_s'):.0f} tls={med('tls','create','ops_per_s'):.0f}"
      f" p99_ms at c=256 plain={med('plain','create','p99_ms'):.2f} tls={med('tls','create','p99_ms'):.2f}"
      f" p99_ms at {t['rate']}/s plain={med('plain','create_paced','p99_ms'):.2f} tls={med('tls','create_paced','p99_ms'):.2f}")
PY
