#!/usr/bin/env bash
# The engine's own figures, each against a bare RPC (Echo on the same server) in the same run:
# standalone create, create at half that rate (latency), batch create; master + sync slave at
# c=256 and at half rate; catch-up of a fresh slave. Writes results.json "standalone",
# "replicated", "catch_up". (TLS's cost: bench/tls.sh.)
set -euo pipefail
BENCH_NAME=engine
source "$(dirname "$0")/lib.sh"
W=$(workdir)
trap 'pkill -f "tfs-nameserver --data-dir $W" 2>/dev/null || true; rm -rf "$W"' EXIT
N=${BENCH_COUNT:-200000}
j() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
half_of() { python3 -c "print(int(float('$(j "$1" ops_per_s)')/2))"; }

log "standalone: echo and create, $N requests at concurrency 256"
ns "$W" a 127.0.0.1 --standalone
echo1=$(tfs_bench 127.0.0.1:8100 --op echo --count "$N" --concurrency 256)
create1=$(tfs_bench 127.0.0.1:8100 --op create --count "$N" --concurrency 256 --sim-dataservers 3)
half=$(half_of "$create1")
log "standalone: create at half that rate ($half/s)"
createh=$(tfs_bench 127.0.0.1:8100 --op create --count $((half * 8)) --concurrency 256 --sim-dataservers 3 --rate "$half")
log "standalone: batch create, 100 blocks a call"
batch1=$(tfs_bench 127.0.0.1:8100 --op batch-create --batch 100 --count $((N / 40)) --concurrency 64 --sim-dataservers 3)
ns_stop "$W" a
put_result standalone "{\"echo\": $echo1, \"create\": $create1, \"create_half_rate\": $createh, \"batch_create\": $batch1}"

log "replicated: master + sync slave (fsync on both) at concurrency 256, then at half rate"
master_with_sync_slave "$W"
echo2=$(tfs_bench 127.0.0.1:8100 --op echo --count "$N" --concurrency 256)
create2=$(tfs_bench 127.0.0.1:8100 --op create --count "$N" --concurrency 256 --sim-dataservers 3)
half2=$(half_of "$create2")
createh2=$(tfs_bench 127.0.0.1:8100 --op create --count $((half2 * 8)) --concurrency 256 --sim-dataservers 3 --rate "$half2")
log "replicated: linearizable GetBlock at concurrency 256 (a read at a committed seq must not wait)"
get2=$(tfs_bench 127.0.0.1:8100 --op get --count "$N" --concurrency 256 --prefill 10000 --sim-dataservers 3)
[ "$(status_field 127.0.0.1:8100 sync_set)" != "[]" ] || die "the slave left the sync set during the run"
ns_stop "$W" s
put_result replicated "{\"echo\": $echo2, \"create\": $create2, \"create_half_rate\": $createh2, \"get\": $get2}"

log "catch-up: a fresh slave joins a master holding $((N * 10)) more records"
tfs_bench 127.0.0.1:8100 --op batch-create --batch 1000 --count $((N / 100)) --concurrency 8 --sim-dataservers 3 >/dev/null
target=$(status_field 127.0.0.1:8100 durable_seq)
ns "$W" f 127.0.0.3
t0=$(date +%s.%N)
"$B/tfsctl" --admin-addr 127.0.0.3:8102 role slave --epoch 1 --master 127.0.0.1:8101 --valid-for 1h >/dev/null
until [ "$(status_field 127.0.0.3:8100 applied_seq)" -ge "$target" ]; do sleep 0.05; done
t1=$(date +%s.%N)
ns_stop "$W" f; ns_stop "$W" m
put_result catch_up "{\"records\": $target, \"seconds\": $(python3 -c "print($t1 - $t0)")}"

python3 - "$RESULTS" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
s, p, c = res["standalone"], res["replicated"], res["catch_up"]
print(f"standalone_create_ops={s['create']['ops_per_s']:.0f} echo_ops={s['echo']['ops_per_s']:.0f} ratio={s['create']['ops_per_s']/s['echo']['ops_per_s']:.2f} p99_half_rate_ms={s['create_half_rate']['p99_ms']:.2f}")
print(f"batch_create_blocks_per_s={s['batch_create']['items_per_s']:.0f}")
print(f"replicated_create_ops={p['create']['ops_per_s']:.0f} echo_ops={p['echo']['ops_per_s']:.0f} ratio={p['create']['ops_per_s']/p['echo']['ops_per_s']:.2f} p99_half_rate_ms={p['create_half_rate']['p99_ms']:.2f} replication_cost={p['create']['ops_per_s']/s['create']['ops_per_s']:.2f}")
print(f"replicated_get_ops={p['get']['ops_per_s']:.0f} p99_ms={p['get']['p99_ms']:.2f} echo_ops={p['echo']['ops_per_s']:.0f} ratio={p['get']['ops_per_s']/p['echo']['ops_per_s']:.2f}")
print(f"catch_up_records_per_s={c['records']/c['seconds']:.0f} ({c['records']} records in {c['seconds']:.2f}s)")
PY
