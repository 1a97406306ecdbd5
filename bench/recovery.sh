#!/usr/bin/env bash
# Memory per block and restart time at 1M and 10M blocks (standalone, fsync on).
# Writes results.json "recovery".
set -euo pipefail
BENCH_NAME=recovery
source "$(dirname "$0")/lib.sh"
W=$(workdir)
trap 'pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true; rm -rf "$W"' EXIT
start() {
  "$B/tfs-nameserver" --data-dir "$W/d" --standalone --listen 127.0.0.1:8100 --admin-listen 127.0.0.1:8102 \
    --metrics-listen 127.0.0.1:9102 >> "$W/ns.log" 2>&1 &
  PID=$!
  local t0; t0=$(date +%s.%N)
  until "$B/tfsctl" status >/dev/null 2>&1; do sleep 0.05; done
  READY=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
fill_to() { # blocks
  local have; have=$("$B/tfsctl" --json status | python3 -c "import json,sys; print(json.load(sys.stdin)['blocks'])")
  local calls=$(( ($1 - have) / 1000 ))
  [ "$calls" -gt 0 ] && "$B/tfsctl" bench --op batch-create --batch 1000 --count "$calls" --concurrency 8 --sim-dataservers 3 >&2
}
declare -A R
start
base=$(rss_kib)
for n in 1000000 10000000; do
  log "filling to $n blocks"
  fill_to $n
  sleep 2
  rss=$(rss_kib)
  log "RSS $rss KiB at $n blocks; kill -9 and restart"
  kill -9 $PID; wait $PID 2>/dev/null || true
  start
  rec=$(grep "state recovered" "$W/ns.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2)
  R[$n]="{\"blocks\": $n, \"rss_kib\": $rss, \"base_rss_kib\": $base, \"bytes_per_block\": $(( (rss - base) * 1024 / n )), \"restart_to_serving_s\": $READY, \"recovery_ms\": $rec}"
  echo "blocks=$n bytes_per_block=$(( (rss - base) * 1024 / n )) rss_mib=$((rss / 1024)) restart_s=$READY recovery_ms=$rec"
done
put_result recovery "[${R[1000000]}, ${R[10000000]}]"
