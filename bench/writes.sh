#!/usr/bin/env bash
# Replicated writes, side by side on loopback in one run: tfs (master + 1 sync slave, fsync on
# both, acknowledged once the slave holds the record) with one unary CreateBlock per create
# ("tfs") and with creates on pipelined sessions ("tfs-session": `tfsctl bench --session`, one
# stream per connection, a burst of creates one writer transaction), against etcd v3.6 with 3
# members and with 1, and a bare unary RPC (Echo) on the same tfs server as the ceiling of one RPC
# per operation on this machine. Same concurrency sweep and the same connection model for every
# system: `c` requests in flight from `c` workers sharing min(c, 4) HTTP/2 connections (for
# tfs-session, the one stream of each). Each point is measured in BENCH_WRITE_ROUNDS rounds (3),
# the systems of one server alternating within a round, and reported as its median round: one
# round's luck (this machine's neighbours come and go) decides no figure. Writes results.json
# "writes".
set -euo pipefail
BENCH_NAME=writes
source "$(dirname "$0")/lib.sh"
W=$(workdir)
trap 'pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true; pkill -f "etcd --name bench-" 2>/dev/null || true; rm -rf "$W"' EXIT

SWEEP=${BENCH_SWEEP:-1 16 64 256 1024}
SCALE=${BENCH_SCALE:-1}   # multiplies every request count (0.2 for a quick look)
ROUNDS=${BENCH_WRITE_ROUNDS:-3}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_WRITE_ROUNDS must be a positive number of rounds, not '$ROUNDS'"
ETCD="$E2E_BIN/etcd"
ETCD_BENCH="$E2E_BIN/etcd-benchmark"
[ -x "$ETCD" ] && [ -x "$ETCD_BENCH" ] || die "etcd and etcd-benchmark are built by 'make cluster-tools' (missing in $E2E_BIN)"
VAL_SIZE=${BENCH_ETCD_VALUE_BYTES:-}

count() { # system concurrency -> requests for a point of a few seconds on this machine
  local base
  case "$1:$2" in
    tfs-echo:1) base=8000 ;; tfs-echo:16) base=80000 ;; tfs-echo:*) base=200000 ;;
    tfs:1) base=4000 ;; tfs:16) base=40000 ;; tfs:*) base=120000 ;;
    tfs-session:1) base=4000 ;; tfs-session:16) base=60000 ;; tfs-session:*) base=300000 ;;
    etcd*:1) base=1500 ;; etcd*:16) base=10000 ;; etcd*:*) base=40000 ;;
  esac
  python3 -c "print(max(int($base * $SCALE), 2 * $2, 1000))"
}
conns() { [ "$1" -lt 4 ] && echo "$1" || echo 4; }

POINTS="$W/points.jsonl"
: > "$POINTS"
point() { # system concurrency round json-from-tfsctl-or-etcd
  python3 - "$1" "$2" "$3" "$4" >> "$POINTS" <<'PY'
import json, sys
system, c, rnd, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
print(json.dumps({"system": system, "concurrency": c, "round": rnd, "count": r["count"], "ops_per_s": r["ops_per_s"],
                  "p50_ms": r["p50_ms"], "p90_ms": r.get("p90_ms"), "p99_ms": r["p99_ms"], "failed": r.get("failed", 0)}))
PY
  tail -1 "$POINTS" | python3 -c "import json,sys; p=json.load(sys.stdin); print(f\"{p['system']:>11} c={p['concurrency']:<5} round {p['round']} {p['ops_per_s']:>9.0f} ops/s  p50 {p['p50_ms']:.2f} ms  p99 {p['p99_ms']:.2f} ms  failed {p['failed']}\")" >&2
}

# --- tfs ---------------------------------------------------------------------------------------
log "tfs: master 127.0.0.1 + sync slave 127.0.0.2 (fsync on both)"
master_with_sync_slave "$W"
for c in $SWEEP; do for r in $(seq "$ROUNDS"); do
  point tfs-echo "$c" "$r" "$(tfs_bench 127.0.0.1:8100 --op echo --count "$(count tfs-echo "$c")" --concurrency "$c" --connections "$(conns "$c")")"
  point tfs "$c" "$r" "$(tfs_bench 127.0.0.1:8100 --op create --count "$(count tfs "$c")" --concurrency "$c" --connections "$(conns "$c")" --sim-dataservers 3)"
  point tfs-session "$c" "$r" "$(tfs_bench 127.0.0.1:8100 --op create --session --count "$(count tfs-session "$c")" --concurrency "$c" --connections "$(conns "$c")" --sim-dataservers 3)"
done; done
[ "$(status_field 127.0.0.1:8100 sync_set)" != "[]" ] || die "the slave left the sync set during the run: the figures would not be replicated writes"
# The size of what a create makes durable: the oplog bytes per record on the master. etcd's value is
# sized so that its put carries the same bytes (key 8 + value).
rec_bytes=$(python3 - "$W/m" "$(status_field 127.0.0.1:8100 durable_seq)" <<'PY'
import os, sys
d, last = sys.argv[1], int(sys.argv[2])
segs = sorted((os.path.join(r, f), int(f[:-4])) for r, _, fs in os.walk(d) for f in fs if f.endswith(".seg"))
if not segs: sys.exit("no oplog segments under " + d)
total = sum(os.path.getsize(p) for p, _ in segs)
print(round(total / max(last - segs[0][1] + 1, 1)))
PY
)
ns_stop "$W" s; ns_stop "$W" m
VAL_SIZE=${VAL_SIZE:-$((rec_bytes - 8))}
log "a tfs create made $rec_bytes oplog bytes durable; etcd puts carry key 8 + value $VAL_SIZE bytes"

# --- etcd --------------------------------------------------------------------------------------
etcd_up() { # members
  local n=$1 cluster="" i
  for i in $(seq 0 $((n - 1))); do cluster+="${cluster:+,}bench-$i=http://127.0.0.1:$((23800 + i))"; done
  for i in $(seq 0 $((n - 1))); do
    "$ETCD" --name "bench-$i" --data-dir "$W/etcd$n-$i" \
      --listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new --quota-backend-bytes 8589934592 \
      --log-level error > "$W/etcd$n-$i.log" 2>&1 &
  done
  ENDPOINTS=$(for i in $(seq 0 $((n - 1))); do printf '127.0.0.1:%s,' $((23790 + i)); done)
  ENDPOINTS=${ENDPOINTS%,}
  for _ in $(seq 100); do
    "$E2E_BIN/etcdctl" --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1 && return
    pgrep -f "etcd --name bench-" >/dev/null || break
    sleep 0.2
  done
  die "etcd ($n members) did not become healthy: $(tail -3 "$W/etcd$n-0.log")"
}
etcd_down() { # and wait until its ports are free for the next cluster
  pkill -f "etcd --name bench-" || true
  for _ in $(seq 100); do pgrep -f "etcd --name bench-" >/dev/null || return 0; sleep 0.1; done
  die "etcd did not stop"
}
etcd_point() { # concurrency -> the same fields tfsctl bench prints
  local c=$1 n; n=$(count etcd "$c")
  "$ETCD_BENCH" put --endpoints "$ENDPOINTS" --target-leader --conns "$(conns "$c")" --clients "$c" --total "$n" \
    --key-size 8 --val-size "$VAL_SIZE" --sequential-keys --key-space-size 1000000000 --precise 2>/dev/null |
    python3 -c '
import json, re, sys
t = sys.stdin.read()
def f(pat):
    m = re.search(pat, t)
    if not m: sys.exit("etcd benchmark output has no " + pat + ":\n" + t)
    return float(m.group(1))
n = int(sys.argv[1])
print(json.dumps({"count": n, "ops_per_s": f(r"Requests/sec:\s*([0-9.]+)"), "p50_ms": 1000 * f(r"\n\s*50% in ([0-9.]+)"),
                  "p90_ms": 1000 * f(r"\n\s*90% in ([0-9.]+)"), "p99_ms": 1000 * f(r"\n\s*99% in ([0-9.]+)"),
                  "failed": len(re.findall(r"^\s*\[\d+\]", t, re.M))}))' "$n"
}
for members in 3 1; do
  log "etcd: $members member(s) on loopback (each fsyncs its WAL; a put is acknowledged once a quorum holds it)"
  etcd_up "$members"
  for c in $SWEEP; do for r in $(seq "$ROUNDS"); do point "etcd-$members" "$c" "$r" "$(etcd_point "$c")"; done; done
  etcd_down
done

put_result writes "$(python3 - "$POINTS" "$rec_bytes" "$VAL_SIZE" "$ROUNDS" <<'PY'
import json, sys
rounds = [json.loads(l) for l in open(sys.argv[1])]
# Each point: the round with the median throughput (the lower middle of an even count), its
# latencies with it; the other rounds' throughputs kept beside it.
by = {}
for r in rounds:
    by.setdefault((r["system"], r["concurrency"]), []).append(r)
pts = []
for rs in by.values():
    rs.sort(key=lambda r: r["ops_per_s"])
    p = dict(rs[(len(rs) - 1) // 2])
    del p["round"]
    p["rounds_ops_per_s"] = [r["ops_per_s"] for r in sorted(rs, key=lambda r: r["round"])]
    pts.append(p)
print(json.dumps({
  "rounds": int(sys.argv[4]),
  "command": "make bench (bench/writes.sh)",
  "request": f"tfs: CreateBlock (one {sys.argv[2]}-byte oplog record fsynced on master and sync slave); "
             f"tfs-session: the same create on a pipelined session (tfs.v1.Session); "
             f"etcd: put with an 8-byte key and a {sys.argv[3]}-byte value (the same bytes), --target-leader",
  "connection_model": "c requests in flight from c workers sharing min(c, 4) HTTP/2 connections (tfsctl bench --connections, etcd benchmark --conns; tfs-session: one session stream per connection)",
  "points": pts}))
PY
)"
log "done: $(wc -l < "$POINTS") measurements, the median of $ROUNDS round(s) for each point, in $RESULTS"
