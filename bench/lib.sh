# Shared by the bench scripts: paths, logging, local nameservers, results.json updates.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B="$ROOT/target/release"
E2E_BIN="$ROOT/.e2e/bin"
RESULTS="${BENCH_RESULTS:-$ROOT/bench/results.json}"

log() { printf '[%s %4ss] %s\n' "${BENCH_NAME:-bench}" "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A scratch directory on disk, not tmpfs: fsync must cost what it costs.
workdir() { mktemp -d "/var/tmp/tfs-${BENCH_NAME:-bench}.XXXX"; }

# TLS on every hop when TLS_CERTS names a `tfsctl dev-certs` directory (nodes NAME… and "bench"):
# each nameserver serves its TLS_CERTS/NAME with client certificates required, tfsctl presents
# TLS_CERTS/bench. Empty: plain TCP.
TLS_CERTS=${TLS_CERTS:-}
ns_tls() { [ -z "$TLS_CERTS" ] || echo "--tls-dir $TLS_CERTS/$1 --client-auth required"; }
ctl() {
  if [ -z "$TLS_CERTS" ]; then "$B/tfsctl" "$@"; return; fi
  "$B/tfsctl" --ca "$TLS_CERTS/ca.crt" --cert "$TLS_CERTS/bench/tls.crt" --key "$TLS_CERTS/bench/tls.key" "$@"
}

# ns DIR NAME IP EXTRA...: start a nameserver listening on IP's ports 8100-8102/9102, wait for it.
ns() {
  local dir=$1 name=$2 ip=$3; shift 3
  # shellcheck disable=SC2046 # ns_tls's words are flags, split on purpose
  "$B/tfs-nameserver" --data-dir "$dir/$name" --node "$name" --listen "$ip:8100" --repl-listen "$ip:8101" \
    --admin-listen "$ip:8102" --metrics-listen "$ip:9102" $(ns_tls "$name") "$@" > "$dir/$name.log" 2>&1 &
  for _ in $(seq 100); do ctl --addr "$ip:8100" status >/dev/null 2>&1 && return; sleep 0.1; done
  die "nameserver $name did not start: $(tail -5 "$dir/$name.log")"
}
ns_stop() { pkill -f "tfs-nameserver --data-dir $1/$2" || true; sleep 0.5; }

# master_with_sync_slave DIR: master on 127.0.0.1, slave on 127.0.0.2, both fsync every record;
# a write is acknowledged only once the slave holds it (the sync set).
master_with_sync_slave() {
  ns "$1" m 127.0.0.1
  ns "$1" s 127.0.0.2
  "$B/tfsctl" --admin-addr 127.0.0.1:8102 role master --epoch 1 --valid-for 1h >/dev/null
  "$B/tfsctl" --admin-addr 127.0.0.2:8102 role slave --epoch 1 --master 127.0.0.1:8101 --valid-for 1h >/dev/null
  for _ in $(seq 100); do
    [ "$(status_field 127.0.0.1:8100 sync_set)" != "[]" ] && return
    sleep 0.1
  done
  die "the slave did not join the sync set"
}

status_field() { # ADDR FIELD
  ctl --json --addr "$1" status | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)[sys.argv[1]]))" "$2"
}

# busy_cores SECONDS: the CPU every process of this machine used over SECONDS, in cores.
busy_cores() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep "$1"
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
  python3 -c "print(round(($b - $a) / $(getconf CLK_TCK) / $1, 2))"
}

# quiet_machine: prints the background load (cores) once it is at most BENCH_MAX_BACKGROUND (0.35:
# an idle local cluster takes about 0.2), waiting up to BENCH_QUIET_WAIT s (120) for it to settle
# (a cluster that just started, a build that just ended). Fails, naming what runs, if it does not
# settle, or if a TfsNameserver runs in the local cluster: on 2 cores a benchmark measures whatever
# runs beside it. BENCH_ALLOW_BUSY=1 measures anyway (the load is recorded with the results).
quiet_machine() {
  local max=${BENCH_MAX_BACKGROUND:-0.35} deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-120})) load others=""
  if [ -f "$ROOT/.e2e/kubeconfig" ] && [ -x "$E2E_BIN/kubectl" ]; then
    others=$("$E2E_BIN/kubectl" --kubeconfig "$ROOT/.e2e/kubeconfig" --request-timeout 5s get tfsnameservers -A \
      --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null | awk '{print $1 "/" $2}' | paste -sd' ' || true)
  fi
  if [ -n "$others" ] && [ "${BENCH_ALLOW_BUSY:-0}" != 1 ]; then
    die "TfsNameserver(s) running in the local cluster: $others. They would share this machine's cores with every measurement: delete them (kubectl delete tfsnameserver -n NAMESPACE NAME), or BENCH_ALLOW_BUSY=1 to measure anyway"
  fi
  while :; do
    load=$(busy_cores 5)
    python3 -c "import sys; sys.exit(0 if $load <= $max else 1)" && { echo "$load"; return; }
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the machine is busy before the run: $load cores (at most $max wanted); the busiest processes:"
      top -b -d 3 -n 2 -o %CPU | awk '/^top -/{n++} n==2' | sed -n '7,13p' >&2
      [ "${BENCH_ALLOW_BUSY:-0}" = 1 ] && { echo "$load"; return; }
      die "not measuring beside that load (BENCH_MAX_BACKGROUND=$max cores); stop it, or BENCH_ALLOW_BUSY=1 to measure anyway"
    fi
    log "waiting for the machine to settle: $load cores busy (at most $max wanted)"
  done
}

tfs_bench() { ctl --json --addr "$1" bench "${@:2}"; }

# put_result KEY.PATH JSON: set a value in results.json (created if absent), keeping the rest.
put_result() {
  python3 - "$RESULTS" "$1" "$2" <<'PY'
import json, os, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
d = json.load(open(path)) if os.path.exists(path) else {}
node = d
*parents, last = key.split(".")
for k in parents:
    node = node.setdefault(k, {})
node[last] = value
json.dump(d, open(path + ".tmp", "w"), indent=2)
os.replace(path + ".tmp", path)
PY
}
