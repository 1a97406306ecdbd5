#!/usr/bin/env bash
# Whole-state work under the writer's lock, seen by clients: a master + sync slave holding
# BENCH_LEAVE_BLOCKS blocks (10M) on 30 simulated dataservers takes single creates at a fixed rate
# (open loop, so a stall delays every request scheduled during it) while
#   baseline    nothing else happens,
#   leave       one dataserver stops renewing and its lease expires (DataserverLeave + planning),
#   checkpoint  a checkpoint of the whole state is taken (on master and slave).
# Writes results.json "leave". Figures: p99.9 and max create latency of each run, the writer's
# state-lock hold of the leave and the checkpoints' copy time from the master's log.
#   BENCH_LEAVE_BLOCKS=10000000 BENCH_LEAVE_RATE=5000 BENCH_LEAVE_SECONDS=14
#   BENCH_BIN=dir  take tfs-nameserver and tfsctl from there (an older build, for a before/after figure)
set -euo pipefail
BENCH_NAME=leave
source "$(dirname "$0")/lib.sh"
B=${BENCH_BIN:-$B}
W=$(workdir)
SIMS=()
cleanup() {
  for p in "${SIMS[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
BLOCKS=${BENCH_LEAVE_BLOCKS:-10000000}
RATE=${BENCH_LEAVE_RATE:-5000}
SECS=${BENCH_LEAVE_SECONDS:-14}
EVERY=2000000 # the nameserver's default --checkpoint-every
M=127.0.0.1:8100

master_with_sync_slave "$W"
field() { status_field $M "$1"; }

# 29 dataservers in one process, the one that will leave in its own (killed to stop its renews).
"$B/tfsctl" --addr $M sim-dataservers --count 29 --first-id 1 >"$W/sims.log" 2>&1 &
SIMS+=($!)
"$B/tfsctl" --addr $M sim-dataservers --count 1 --first-id 30 >"$W/sim30.log" 2>&1 &
LEAVER=$!
SIMS+=($LEAVER)
for _ in $(seq 100); do [ "$(field live_dataservers)" = 30 ] && break; sleep 0.1; done
[ "$(field live_dataservers)" = 30 ] || die "the 30 simulated dataservers did not register"

log "filling to $BLOCKS blocks (batch-create, 1000 a call)"
t0=$SECONDS
tfs_bench $M --op batch-create --batch 1000 --count $((BLOCKS / 1000)) --concurrency 8 >/dev/null
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$(pgrep -f "data-dir $W/m ")/status")
log "filled in $((SECONDS - t0)) s; master RSS $RSS KiB"
# Records until the next checkpoint is due (it starts at the end of the group commit that reaches it).
due() { echo $((EVERY - $(field durable_seq) + $(field checkpoint_seq))); }
ckpt_after() { # SEQ: wait until a checkpoint above SEQ is written
  for _ in $(seq 300); do [ "$(field checkpoint_seq)" -gt "$1" ] && return; sleep 0.2; done
  die "no checkpoint was written"
}
# Take a checkpoint now, so that the next is ~2M records away and falls in neither run below.
ck0=$(field checkpoint_seq)
tfs_bench $M --op batch-create --batch 1000 --count $(($(due) / 1000 + 1)) --concurrency 8 >/dev/null
ckpt_after "$ck0"
sleep 2

# A failed request (none expected) shows in the run's "failed"; it does not stop the script.
creates() { tfs_bench $M --op create --rate "$RATE" --count $((RATE * SECS)) --concurrency 256 --progress-every 1h || true; }

log "baseline: creates at $RATE/s for ${SECS}s"
base=$(creates)

log "leave: creates at $RATE/s for ${SECS}s; dataserver 30 stops renewing at 2 s (declared dead ~4-6 s later)"
creates >"$W/leave.json" &
BENCH=$!
sleep 2
kill "$LEAVER"
wait "$BENCH" || true
leave=$(cat "$W/leave.json")
[ "$(field live_dataservers)" = 29 ] || die "dataserver 30 was not declared dead during the run"
strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
# (Older builds log no txn_ms: null then.)
logged() { strip "$W/m.log" | grep "declared dead" | grep -o "$1=[0-9.]*" | cut -d= -f2 | tail -1 || true; }
planned=$(logged replicate_tasks)
hold=$(logged txn_ms)

log "checkpoint: creates at $RATE/s for ${SECS}s with a checkpoint due in the middle"
ck0=$(field checkpoint_seq)
fill=$(($(due) - RATE * SECS / 2))
[ "$fill" -gt 1000 ] && tfs_bench $M --op batch-create --batch 1000 --count $((fill / 1000)) --concurrency 8 >/dev/null
ckpt=$(creates)
ckpt_after "$ck0"
copy_ms() { strip "$1" | grep "checkpoint started" | tail -1 | grep -o 'copy_ms=[0-9.]*' | cut -d= -f2 || true; }

put_result leave "$(python3 - "$BLOCKS" "$RATE" "$SECS" "$base" "$leave" "$ckpt" "${planned:-null}" "${hold:-null}" \
  "$(copy_ms "$W/m.log")" "$(copy_ms "$W/s.log")" "$RSS" <<'PY'
import json, sys
blocks, rate, secs, rss = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[11])
base, leave, ckpt = (json.loads(a) for a in sys.argv[4:7])
print(json.dumps({
  "command": "make bench (bench/leave.sh)",
  "setup": f"master + sync slave, {blocks} blocks on 30 simulated dataservers, single creates open loop at {rate}/s for {secs} s",
  "blocks": blocks, "dataservers": 30, "rate": rate, "master_rss_kib": rss, "rss_bytes_per_block": rss * 1024 // blocks,
  "baseline": base, "leave": leave, "checkpoint": ckpt,
  "leave_replicate_tasks_first_txn": json.loads(sys.argv[7]), "leave_txn_ms": json.loads(sys.argv[8]),
  "checkpoint_copy_ms_master": json.loads(sys.argv[9] or "null"), "checkpoint_copy_ms_slave": json.loads(sys.argv[10] or "null"),
}))
PY
)"
python3 - "$RESULTS" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))["leave"]
print(f"leave_p999_ms={l['leave']['p999_ms']:.1f} leave_max_ms={l['leave']['max_ms']:.1f} "
      f"baseline_p999_ms={l['baseline']['p999_ms']:.1f} baseline_max_ms={l['baseline']['max_ms']:.1f} "
      f"checkpoint_p999_ms={l['checkpoint']['p999_ms']:.1f} checkpoint_max_ms={l['checkpoint']['max_ms']:.1f} "
      f"checkpoint_copy_ms={l['checkpoint_copy_ms_master']} replicate_tasks_first_txn={l['leave_replicate_tasks_first_txn']} "
      f"leave_txn_ms={l['leave_txn_ms']} rss_bytes_per_block={l['rss_bytes_per_block']}")
PY
