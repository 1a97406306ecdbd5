#!/usr/bin/env bash
# make bench: every figure of docs/BENCHMARKS.md, measured in one run on this machine, then
# bench-report (summary lines, tables and plots). Each step is its own script and can be run
# alone; each writes its section of bench/results.json.
#   BENCH_SKIP="failover criterion"   skip steps (names below)
#   BENCH_SCALE=0.2                   fewer requests per point of the write sweep
#   BENCH_FAILOVER_TRIALS=20          trials of each failover kind
#   BENCH_NODELOSS_TRIALS=10          trials of each node-loss kind
#   BENCH_RESULTS, BENCH_DOCS, BENCH_PLOTS   where results, the doc and the plots go
#   BENCH_FRESH=0                     add to the existing results instead of starting afresh
#   BENCH_WRITE_ROUNDS=3              rounds of each point of the write sweep (the median is kept)
#   BENCH_MAX_BACKGROUND=0.35         most cores the machine may use before the run (BENCH_ALLOW_BUSY=1: measure anyway)
set -euo pipefail
BENCH_NAME=bench
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
STEPS="writes engine tls leave recovery backup failover criterion"
skip() { [[ " ${BENCH_SKIP:-} " == *" $1 "* ]]; }

# Figures from different runs must not mix: start a fresh results file, keep the last one
# (BENCH_FRESH=0 keeps it, to redo some steps of the same run with BENCH_SKIP).
if [ "${BENCH_FRESH:-1}" = 1 ] && [ -f "$RESULTS" ]; then mv "$RESULTS" "$RESULTS.prev"; fi
put_result machine "$(python3 - <<'PY'
import json, os, platform, subprocess, datetime
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
osr = dict(l.rstrip().split("=", 1) for l in open("/etc/os-release") if "=" in l)
disk = subprocess.run(["df", "-hT", "/var/tmp"], capture_output=True, text=True).stdout.splitlines()[-1].split()
print(json.dumps({
  "cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 1048576), "kernel": platform.release(),
  "os": osr.get("PRETTY_NAME", "?").strip('"'), "disk": f"{disk[1]} on {disk[0]} (/var/tmp)",
  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()[1],
}))
PY
)"

# The machine must be quiet first (lib.sh quiet_machine): what else runs is measured too.
log "checking that nothing else keeps this machine busy"
background=$(quiet_machine)
log "background load before the run: $background cores"
put_result machine.background_cores "$background"

for step in $STEPS; do
  if skip "$step"; then log "skipping $step (BENCH_SKIP)"; continue; fi
  t0=$SECONDS
  log "== $step"
  case $step in
    writes | engine | tls | leave | recovery | backup | failover) "bench/$step.sh" ;;
    criterion) cargo bench -p tfs-nameserver --bench core -- --noplot 2>&1 | grep -E -B1 "time: " | grep -v "^--$" >&2 ;;
  esac
  log "== $step took $((SECONDS - t0)) s"
done

log "== report: summary lines, docs/BENCHMARKS.md tables, docs/bench/*.svg|png"
"$B/bench-report" --results "$RESULTS" --docs "${BENCH_DOCS:-docs/BENCHMARKS.md}" --plots "${BENCH_PLOTS:-docs/bench}"
log "make bench took $SECONDS s"
