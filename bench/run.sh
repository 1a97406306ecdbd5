#!/usr/bin/env bash
# make bench: the nameserver's figures on this machine, each against a bare RPC (Echo on the same
# server) measured in the same run. Writes bench/results.json and prints one summary line each.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/target/release"
OUT="$ROOT/bench/results.json"
W=$(mktemp -d /var/tmp/tfs-bench.XXXX)   # on disk, not tmpfs: fsync must cost what it costs
trap 'pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true; rm -rf "$W"' EXIT
N=${BENCH_COUNT:-200000}
log() { printf '[bench %4ss] %s\n' "$SECONDS" "$*" >&2; }

ns() { # name ip extra...
  local name=$1 ip=$2; shift 2
  "$B/tfs-nameserver" --data-dir "$W/$name" --node "$name" --listen "$ip:8100" --repl-listen "$ip:8101" \
    --admin-listen "$ip:8102" --metrics-listen "$ip:9102" "$@" > "$W/$name.log" 2>&1 &
  for _ in $(seq 100); do "$B/tfsctl" --addr "$ip:8100" status >/dev/null 2>&1 && return; sleep 0.1; done
  echo "nameserver $name did not start" >&2; exit 1
}
bench() { "$B/tfsctl" --json --addr "$1" bench "${@:2}"; }
stop() { pkill -f "tfs-nameserver --data-dir $W/$1" || true; sleep 0.5; }
j() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

log "standalone: echo and create, $N requests at concurrency 256"
ns a 127.0.0.1 --standalone
echo1=$(bench 127.0.0.1:8100 --op echo --count "$N" --concurrency 256)
create1=$(bench 127.0.0.1:8100 --op create --count "$N" --concurrency 256 --sim-dataservers 3)
half=$(python3 -c "print(int(float('$(j "$create1" ops_per_s)')/2))")
log "standalone: create at half that rate ($half/s)"
createh=$(bench 127.0.0.1:8100 --op create --count $((half * 8)) --concurrency 256 --sim-dataservers 3 --rate "$half")
log "standalone: batch create, 100 blocks a call"
batch1=$(bench 127.0.0.1:8100 --op batch-create --batch 100 --count $((N / 40)) --concurrency 64 --sim-dataservers 3)
stop a

log "replicated: master + sync slave (fsync on both), same sweep"
ns m 127.0.0.1
ns s 127.0.0.2
"$B/tfsctl" --admin-addr 127.0.0.1:8102 role master --epoch 1 --valid-for 1h >/dev/null
"$B/tfsctl" --admin-addr 127.0.0.2:8102 role slave --epoch 1 --master 127.0.0.1:8101 --valid-for 1h >/dev/null
sleep 1
echo2=$(bench 127.0.0.1:8100 --op echo --count "$N" --concurrency 256)
create2=$(bench 127.0.0.1:8100 --op create --count "$N" --concurrency 256 --sim-dataservers 3)
half2=$(python3 -c "print(int(float('$(j "$create2" ops_per_s)')/2))")
createh2=$(bench 127.0.0.1:8100 --op create --count $((half2 * 8)) --concurrency 256 --sim-dataservers 3 --rate "$half2")
insync=$("$B/tfsctl" --json --addr 127.0.0.1:8100 status | python3 -c "import json,sys; print(json.load(sys.stdin)['sync_set'])")
stop s

log "catch-up: a fresh slave joins a master holding $((N * 10)) records"
bench 127.0.0.1:8100 --op batch-create --batch 1000 --count $((N / 100)) --concurrency 8 --sim-dataservers 3 >/dev/null
target=$("$B/tfsctl" --json --addr 127.0.0.1:8100 status | python3 -c "import json,sys; print(json.load(sys.stdin)['durable_seq'])")
rm -rf "$W/f"
ns f 127.0.0.3
t0=$(date +%s.%N)
"$B/tfsctl" --admin-addr 127.0.0.3:8102 role slave --epoch 1 --master 127.0.0.1:8101 --valid-for 1h >/dev/null
while :; do
  got=$("$B/tfsctl" --json --addr 127.0.0.3:8100 status | python3 -c "import json,sys; print(json.load(sys.stdin)['applied_seq'])")
  [ "$got" -ge "$target" ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
stop f; stop m

python3 - "$OUT" <<PY
import json, sys
r = lambda s: json.loads(s)
res = {
  "standalone": {"echo": r('''$echo1'''), "create": r('''$create1'''), "create_half_rate": r('''$createh'''), "batch_create": r('''$batch1''')},
  "replicated": {"echo": r('''$echo2'''), "create": r('''$create2'''), "create_half_rate": r('''$createh2''')},
  "catch_up": {"records": int("$target"), "seconds": float("$t1") - float("$t0")},
  "sync_set_during_run": "$insync",
}
json.dump(res, open(sys.argv[1], "w"), indent=2)
s, p = res["standalone"], res["replicated"]
print(f"standalone_create_ops={s['create']['ops_per_s']:.0f} echo_ops={s['echo']['ops_per_s']:.0f} ratio={s['create']['ops_per_s']/s['echo']['ops_per_s']:.2f} p99_half_rate_ms={s['create_half_rate']['p99_ms']:.2f}")
print(f"batch_create_blocks_per_s={s['batch_create']['items_per_s']:.0f}")
print(f"replicated_create_ops={p['create']['ops_per_s']:.0f} echo_ops={p['echo']['ops_per_s']:.0f} ratio={p['create']['ops_per_s']/p['echo']['ops_per_s']:.2f} p99_half_rate_ms={p['create_half_rate']['p99_ms']:.2f} replication_cost={p['create']['ops_per_s']/s['create']['ops_per_s']:.2f}")
c = res["catch_up"]
print(f"catch_up_records_per_s={c['records']/c['seconds']:.0f} ({c['records']} records in {c['seconds']:.2f}s)")
PY
