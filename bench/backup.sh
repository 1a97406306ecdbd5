#!/usr/bin/env bash
# The archive to object storage, against the local cluster's S3 store (SeaweedFS, `make cluster`):
#   cost     replicated creates (master + sync slave, fsync on both) with the archive on and off,
#            the two pairs measured in turns in the same run: throughput ratio;
#   lag      archive lag while writing 5,000 creates/s (the master's tfs_archive_lag_seconds,
#            sampled every 200 ms): p50, p99, max;
#   restore  10M blocks (a checkpoint of 9M + 1M records of log) restored from the archive into an
#            empty directory and opened by a nameserver: seconds to serving.
# Every archive here runs with --archive-timeout 1s. Writes results.json "backup".
set -euo pipefail
BENCH_NAME=backup
source "$(dirname "$0")/lib.sh"
W=$(workdir)
# The work directory (logs of every nameserver) stays when a step fails.
trap 'rc=$?; pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true; if [ $rc = 0 ]; then rm -rf "$W"; else log "logs kept in $W"; fi' EXIT
PARTS=" ${BENCH_BACKUP_PARTS:-cost lag restore} "   # a subset to redo one part
OBJ="$ROOT/e2e/cluster/objectstore.sh"
"$OBJ" status >/dev/null 2>&1 || die "the object store is not running: make cluster (or make object-store)"
eval "$("$OBJ" env)"   # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, TFS_S3_ENDPOINT
"$OBJ" bucket tfs-backups >/dev/null
RUN_ID=$(date +%s)
archive() { echo "--archive s3://tfs-backups/bench/$RUN_ID/$1 --archive-endpoint $TFS_S3_ENDPOINT --archive-timeout 1s"; }
ROUNDS=${BENCH_BACKUP_ROUNDS:-3}
COST_COUNT=${BENCH_BACKUP_COST_COUNT:-60000}
LAG_SECONDS=${BENCH_BACKUP_LAG_SECONDS:-60}
FILL_BLOCKS=${BENCH_BACKUP_FILL_BLOCKS:-9000000}
LOG_RECORDS=${BENCH_BACKUP_LOG_RECORDS:-1000000}

# pair NAME MASTER_IP SLAVE_IP EXTRA...: a master and its sync slave, as master_with_sync_slave.
pair() {
  local name=$1 m=$2 s=$3; shift 3
  ns "$W" "$name-m" "$m" "$@"
  ns "$W" "$name-s" "$s" "$@"
  "$B/tfsctl" --admin-addr "$m:8102" role master --epoch 1 --valid-for 1h >/dev/null
  "$B/tfsctl" --admin-addr "$s:8102" role slave --epoch 1 --master "$m:8101" --valid-for 1h >/dev/null
  for _ in $(seq 100); do
    [ "$(status_field "$m:8100" sync_set)" != "[]" ] && return
    sleep 0.1
  done
  die "pair $name: the slave did not join the sync set"
}
archived_seq() { ctl --json --addr "$1" status | python3 -c "import json,sys; print((json.load(sys.stdin).get('archive') or {}).get('archived_seq', 0))"; }
wait_archived() { # ADDR SEQ TIMEOUT_S
  for _ in $(seq $(($3 * 10))); do
    [ "$(archived_seq "$1")" -ge "$2" ] && return
    sleep 0.1
  done
  die "$1: archive not through seq $2 within $3 s: $(ctl --addr "$1" status | grep archive)"
}
ops() { python3 -c "import json,sys; print(json.load(sys.stdin)['ops_per_s'])"; }

COST=null; LAG=null; RESTORE=null
if [[ $PARTS == *" cost "* || $PARTS == *" lag "* ]]; then
log "== cost: replicated creates at c=256, $ROUNDS rounds of $COST_COUNT, archive off (127.0.0.1/2) and on (127.0.0.3/4) in turns"
# shellcheck disable=SC2046 # archive's words are flags
pair off 127.0.0.1 127.0.0.2
# shellcheck disable=SC2046
pair on 127.0.0.3 127.0.0.4 $(archive cost)
OFF=(); ON=()
for r in $(seq "$ROUNDS"); do
  off=$(tfs_bench 127.0.0.1:8100 --op create --count "$COST_COUNT" --concurrency 256 --connections 4 --sim-dataservers 3 | ops)
  on=$(tfs_bench 127.0.0.3:8100 --op create --count "$COST_COUNT" --concurrency 256 --connections 4 --sim-dataservers 3 | ops)
  OFF+=("$off"); ON+=("$on")
  log "round $r: archive off $off creates/s, on $on creates/s"
done
committed=$(status_field 127.0.0.3:8100 committed_seq)
wait_archived 127.0.0.3:8100 "$committed" 30
ns_stop "$W" off-m; ns_stop "$W" off-s
COST=$(python3 - "${OFF[*]}" "${ON[*]}" <<'PY'
import json, statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
print(json.dumps({"concurrency": 256, "rounds": len(off), "off_ops_per_s": off, "on_ops_per_s": on,
                  "ratio_on_off": round(statistics.median(on) / statistics.median(off), 3)}))
PY
)
log "cost: $COST"

log "== lag: 5,000 creates/s for $LAG_SECONDS s on the archiving pair, tfs_archive_lag_seconds every 200 ms"
SAMPLES="$W/lag.txt"; : > "$SAMPLES"
( while :; do
    curl -s 127.0.0.3:9102/metrics | awk '$1 == "tfs_archive_lag_seconds" {print $2}' >> "$SAMPLES"
    sleep 0.2
  done ) &
SAMPLER=$!
LAG_RUN=$(tfs_bench 127.0.0.3:8100 --op create --rate 5000 --count $((5000 * LAG_SECONDS)) --concurrency 64 --connections 4 --sim-dataservers 3)
kill $SAMPLER 2>/dev/null || true; wait $SAMPLER 2>/dev/null || true
committed=$(status_field 127.0.0.3:8100 committed_seq)
wait_archived 127.0.0.3:8100 "$committed" 30
LAG=$(python3 - "$SAMPLES" "$LAG_RUN" <<'PY'
import json, sys
xs = sorted(float(l) for l in open(sys.argv[1]) if l.strip())
run = json.loads(sys.argv[2])
q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None
print(json.dumps({"rate_target": 5000, "ops_per_s": run["ops_per_s"], "failed": run.get("failed", 0),
                  "samples": len(xs), "lag_p50_s": q(0.5), "lag_p99_s": q(0.99), "lag_max_s": xs[-1] if xs else None,
                  "archive_timeout_s": 1}))
PY
)
log "lag: $LAG"
ns_stop "$W" on-m; ns_stop "$W" on-s
fi

if [[ $PARTS == *" restore "* ]]; then
log "== restore: $FILL_BLOCKS blocks by batches, a backup, $LOG_RECORDS single creates, then a restore of the latest point"
# shellcheck disable=SC2046
ns "$W" big 127.0.0.5 --standalone $(archive restore)
tfs_bench 127.0.0.5:8100 --op batch-create --batch 1000 --count $((FILL_BLOCKS / 1000)) --concurrency 8 --sim-dataservers 3 >/dev/null
BACKUP=$(ctl --json --addr 127.0.0.5:8100 backup now)
log "backup: $BACKUP"
tfs_bench 127.0.0.5:8100 --op create --count "$LOG_RECORDS" --concurrency 256 --connections 4 --sim-dataservers 3 >/dev/null
committed=$(status_field 127.0.0.5:8100 committed_seq)
blocks=$(status_field 127.0.0.5:8100 blocks)
wait_archived 127.0.0.5:8100 "$committed" 120
ns_stop "$W" big
t0=$(date +%s.%N)
"$B/tfsctl" backup restore --archive "s3://tfs-backups/bench/$RUN_ID/restore" --archive-endpoint "$TFS_S3_ENDPOINT" \
  --data-dir "$W/restored" --latest > "$W/restore.log" 2>&1 || die "restore failed: $(tail -3 "$W/restore.log")"
t1=$(date +%s.%N)
"$B/tfs-nameserver" --data-dir "$W/restored" --node restored --standalone --listen 127.0.0.6:8100 --repl-listen 127.0.0.6:8101 \
  --admin-listen 127.0.0.6:8102 --metrics-listen 127.0.0.6:9102 > "$W/restored.log" 2>&1 &
until ctl --addr 127.0.0.6:8100 status >/dev/null 2>&1; do sleep 0.05; done
t2=$(date +%s.%N)
got=$(status_field 127.0.0.6:8100 blocks)
seq=$(status_field 127.0.0.6:8100 applied_seq)
[ "$got" = "$blocks" ] || die "restored $got blocks, the source had $blocks"
[ "$seq" = "$committed" ] || die "restored through seq $seq, the source committed $committed"
pkill -f "tfs-nameserver --data-dir $W/restored" || true
RESTORE=$(python3 - "$t0" "$t1" "$t2" "$blocks" "$seq" "$(tail -1 "$W/restore.log")" "$BACKUP" <<'PY'
import json, sys
t0, t1, t2 = map(float, sys.argv[1:4])
b = json.loads(sys.argv[7])
print(json.dumps({"blocks": int(sys.argv[4]), "seq": int(sys.argv[5]), "checkpoint_seq": b["seq"],
                  "checkpoint_bytes": b["bytes"], "log_records": int(sys.argv[5]) - b["seq"],
                  "restore_s": round(t1 - t0, 2), "open_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
                  "tool": sys.argv[6]}))
PY
)
log "restore: $RESTORE"
fi
# The run's objects go: the store keeps only what the suites need (deleted space returns when
# SeaweedFS vacuums its volumes). The prefix is percent-encoded and the query left in sorted order:
# curl's SigV4 signs the query as given, which the server's canonical form must match.
for key in $("$OBJ" curl "tfs-backups?list-type=2&prefix=bench%2F$RUN_ID%2F" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'); do
  "$OBJ" curl "tfs-backups/$key" -X DELETE >/dev/null
done
for k in cost lag restore; do
  v=${k^^}; [ "${!v}" != null ] && put_result "backup.$k" "${!v}"
done
python3 - "$COST" "$LAG" "$RESTORE" <<'PY'
import json, sys
cost, lag, restore = (json.loads(a) for a in sys.argv[1:4])
out = []
if cost: out.append(f"backup_cost_ratio={cost['ratio_on_off']}")
if lag: out.append(f"archive_lag_p99_s={lag['lag_p99_s']}")
if restore: out.append(f"restore_10m_s={restore['total_s']}")
print(" ".join(out))
PY
