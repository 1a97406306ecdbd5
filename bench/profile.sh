#!/usr/bin/env bash
# Instructions per request on the master or its slave (valgrind's callgrind), master + sync slave:
# warm up, zero the counters, run N requests, dump. Instruction counts are deterministic where
# throughput on a shared two-core machine is not, so this is how a change to the write path is
# judged.
#   bench/profile.sh [NAMESERVER_BINARY]       (default: target/release/tfs-nameserver)
#   OP=create|echo N=30000 C=64                requests, concurrency
#   NODE=master|slave                          the process profiled (the other runs natively)
# Prints `op=… node=… instructions_per_request=…` and leaves the profile for callgrind_annotate.
set -euo pipefail
BENCH_NAME=profile
source "$(dirname "$0")/lib.sh"
BIN=${1:-$B/tfs-nameserver}
OP=${OP:-create}; N=${N:-30000}; C=${C:-64}; NODE=${NODE:-master}
case $NODE in master) PROFILED=m ;; slave) PROFILED=s ;; *) die "NODE is master or slave, not '$NODE'" ;; esac
command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"
W=$(workdir)
trap 'pkill -f "data-dir $W" 2>/dev/null || true; rm -rf "$W"' EXIT
# node NAME IP: starts a nameserver, under callgrind if it is the one profiled.
node() {
  local run=("$BIN")
  [ "$1" = "$PROFILED" ] && run=(valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$BIN")
  "${run[@]}" --data-dir "$W/$1" --node "$1" --listen "$2:8100" --repl-listen "$2:8101" --admin-listen "$2:8102" \
    --metrics-listen "$2:9102" > "$W/$1.log" 2>&1 &
  for _ in $(seq 300); do "$B/tfsctl" --addr "$2:8100" status >/dev/null 2>&1 && return; sleep 0.2; done
  die "nameserver $1 did not start: $(tail -5 "$W/$1.log")"
}
node m 127.0.0.1
node s 127.0.0.2
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
out="/tmp/callgrind.$(basename "$BIN").$OP.$NODE"
cp "$dump" "$out"
echo "op=$OP node=$NODE concurrency=$C requests=$N instructions_per_request=$((total / N)) binary=$BIN profile=$out"
