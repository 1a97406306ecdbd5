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
