#!/usr/bin/env bash
# Instructions per request on the master (valgrind's callgrind), master + sync slave: warm up,
# zero the counters, run N requests, dump. Instruction counts are deterministic where throughput
# on a shared two-core machine is not, so this is how a change to the write path is judged.
#   bench/profile.sh [NAMESERVER_BINARY]       (default: target/release/tfs-nameserver)
#   OP=create|echo N=30000 C=64                requests, concurrency
# Prints `op=… instructions_per_request=…` and leaves the profile for callgrind_annotate.
set -euo pipefail
BENCH_NAME=profile
source "$(dirname "$0")/lib.sh"
BIN=${1:-$B/tfs-nameserver}
OP=${OP:-create}; N=${N:-30000}; C=${C:-64}
command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"
W=$(workdir)
trap 'pkill -f "data-dir $W" 2>/dev/null || true; rm -rf "$W"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$BIN" --data-dir "$W/m" --node m \
  --listen 127.0.0.1:8100 --repl-listen 127.0.0.1:8101 --admin-listen 127.0.0.1:8102 \
  --metrics-listen 127.0.0.1:9102 > "$W/m.log" 2>&1 &
for _ in $(seq 300); do "$B/tfsctl" --addr 127.0.0.1:8100 status >/dev/null 2>&1 && break; sleep 0.2; done
ns "$W" s 127.0.0.2
"$B/tfsctl" --admin-addr 127.0.0.1:8102 role master --epoch 1 --valid-for 1h >/dev/null
"$B/tfsctl" --admin-addr 127.0.0.2:8102 role slave --epoch 1 --master 127.0.0.1:8101 --valid-for 1h >/dev/null
sleep 2
log "warm-up, then $N $OP requests at concurrency $C under callgrind"
tfs_bench 127.0.0.1:8100 --op "$OP" --count 2000 --concurrency "$C" --sim-dataservers 3 >/dev/null 2>&1
callgrind_control -z >/dev/null
tfs_bench 127.0.0.1:8100 --op "$OP" --count "$N" --concurrency "$C" --sim-dataservers 3 >/dev/null 2>&1
callgrind_control -d >/dev/null
sleep 1
dump=$(ls -t "$W"/cg.out.* | head -1)
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
out="/tmp/callgrind.$(basename "$BIN").$OP"
cp "$dump" "$out"
echo "op=$OP concurrency=$C requests=$N instructions_per_request=$((total / N)) binary=$BIN profile=$out"
