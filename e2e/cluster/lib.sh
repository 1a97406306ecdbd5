# Shared helpers for the local cluster scripts; sourced, not run.
# Everything the cluster creates lives under $E2E (default: <repo>/.e2e).
set -euo pipefail

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${ROOT:-$(cd "$CLUSTER_DIR/../.." && pwd)}
E2E=${E2E:-$ROOT/.e2e}
BIN=$E2E/bin
LOGS=$E2E/logs
PIDS=$E2E/pids
CERTS=$E2E/certs
STATE=$E2E/state          # etcd data, kubelet dir, containerd root, cni state
RUNDIR=$E2E/run           # sockets
KUBECONFIG_ADMIN=$E2E/kubeconfig

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
CRICTL_VERSION=v1.37.0

# Cluster addressing.
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1            # the `kubernetes` Service
CLUSTER_DNS=10.96.0.10          # reserved; no DNS server is run
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
CNI_BRIDGE=cni0
API_PORT=6443
NODE_NAME=${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}

export PATH=$BIN:/usr/local/go/bin:$PATH

_T0=${_T0:-$(date +%s)}
export _T0
say()  { printf '[cluster %4ss] %s\n' "$(( $(date +%s) - _T0 ))" "$*"; }
warn() { printf '[cluster %4ss] WARNING: %s\n' "$(( $(date +%s) - _T0 ))" "$*" >&2; }
die()  { printf '[cluster %4ss] ERROR: %s\n' "$(( $(date +%s) - _T0 ))" "$*" >&2; exit 1; }

# The host's primary (non-loopback) IPv4 address: source address of the default route,
# else the first global address.
host_ip() {
  local ip
  ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global | awk '{sub("/.*","",$4); print $4; exit}')
  [ -n "$ip" ] || die "no non-loopback IPv4 address found"
  echo "$ip"
}

# pid file helpers: a component is "running" when its recorded pid is alive and is the binary we started.
pid_of() { [ -f "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid" || true; }
# alive NAME: the recorded process exists and is not a zombie (right after a start its command
# line may still be that of the forking shell, so this does not look at it).
alive() {
  local pid st; pid=$(pid_of "$1")
  [ -n "$pid" ] && st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]
}
is_running() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -r "/proc/$pid/cmdline" ] &&
    grep -qF -- "$2" <<< "$(tr '\0' ' ' < "/proc/$pid/cmdline")"
}

# stop NAME MATCH [TIMEOUT]: SIGTERM to the process group of the recorded pid, SIGKILL after TIMEOUT.
# Several "NAME MATCH" pairs can be stopped at once with stop_all.
stop_all() {
  local pids=() n
  while [ $# -ge 2 ]; do stop "$1" "$2" 30 & pids+=($!); shift 2; done
  for n in "${pids[@]}"; do wait "$n" || true; done
}
stop() {
  local name=$1 match=$2 timeout=${3:-20} pid
  pid=$(pid_of "$name")
  if [ -z "$pid" ]; then return 0; fi
  if ! is_running "$name" "$match"; then
    rm -f "$PIDS/$name.pid" "$PIDS/$name.fp"; return 0
  fi
  say "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local end=$(( $(date +%s) + timeout ))
  while alive "$name"; do   # (an exited process may stay a zombie for a while under this init)
    if [ "$(date +%s)" -ge "$end" ]; then
      warn "$name did not stop in ${timeout}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      sleep 1; break
    fi
    sleep 0.2
  done
  # anything left in its process group (helpers it spawned)
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDS/$name.pid" "$PIDS/$name.fp"
}

# Network namespaces left by CNI (cni-*) that no process uses any more.
clean_netns() {
  local ns
  [ -d /run/netns ] || return 0
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    [ -z "$(ip netns pids "$(basename "$ns")" 2>/dev/null)" ] || continue
    ip netns delete "$(basename "$ns")" 2>/dev/null || { umount "$ns" 2>/dev/null; rm -f "$ns"; } || true
  done
}

# containerd shims of this cluster (their command line names this cluster's containerd socket).
is_shim() {
  [ -r "/proc/$1/cmdline" ] && grep -qF -- "containerd-shim" "/proc/$1/cmdline" 2>/dev/null &&
    grep -qF -- "$RUNDIR/containerd.sock" "/proc/$1/cmdline" 2>/dev/null
}
cluster_shims() {
  local f
  for f in /proc/[0-9]*; do is_shim "${f#/proc/}" && echo "${f#/proc/}"; done
  return 0
}

# With no pod left running, release every pod address: host-local IPAM keeps one file per
# address, and pods killed without a CNI DEL would leak theirs.
release_pod_ips() {
  find "$STATE/cni/networks" -mindepth 2 -maxdepth 2 -type f ! -name lock -delete 2>/dev/null || true
}
