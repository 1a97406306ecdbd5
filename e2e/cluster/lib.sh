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
# SeaweedFS (weed) as the S3-compatible object store; the pin is seaweedfs/go.mod's.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6

# Cluster addressing.
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1            # the `kubernetes` Service
CLUSTER_DNS=10.96.0.10          # reserved; no DNS server is run
CLUSTER_CIDR=10.244.0.0/16      # every node's pod range is a /24 of it
API_PORT=6443
# The object store (objectstore.sh): a host process; its S3 API on every address of the host,
# given to pods as node-1's bridge address (10.244.0.1, reachable from every node's pods, and
# never cut by node-down, which drops .2-.254 of a node's range), to host tools as 127.0.0.1.
OBJSTORE=$E2E/objectstore
S3_PORT=8333
S3_BUCKET=tfs-backups
S3_REGION=us-east-1

# Nodes. The cluster has NODES nodes (default 3; the count of a running cluster is kept in
# $E2E/nodes, so later commands need not repeat it), named node-1 ... node-N. They are simulated
# on this machine: each has its own kubelet, containerd, pod range and bridge, cgroup root and
# directories, and shares the host's network stack (one kube-proxy serves them all). A node is
# lost with `node-down.sh` (every process of it frozen, its traffic dropped).
NODES=${NODES:-$(cat "$E2E/nodes" 2>/dev/null || echo 3)}
case $NODES in [1-9]) ;; *) echo "NODES must be 1..9, not '$NODES'" >&2; exit 1 ;; esac
node_names() { local i; for i in $(seq 1 "$NODES"); do echo "node-$i"; done; }
# node_index NODE: 1 for node-1 ...; fails for a name that is not a node of this cluster.
node_index() {
  local i=${1#node-}
  [[ "$1" == node-* && "$i" =~ ^[1-9]$ && $i -le $NODES ]] || die "no node '$1' in this cluster (nodes: $(node_names | tr '\n' ' '))"
  echo "$i"
}
# Per-node values, by index.
node_pod_cidr()    { echo "10.244.$(( $1 - 1 )).0/24"; }
node_gateway()     { echo "10.244.$(( $1 - 1 )).1"; }
node_bridge()      { echo "cni$(( $1 - 1 ))"; }
node_bridge_mac()  { printf '02:74:66:73:00:%02x' "$1"; }   # locally administered, one per node
node_kubelet_port(){ echo $(( 10250 + 1000 * ($1 - 1) )); }
node_healthz_port(){ echo $(( 10248 + 1000 * ($1 - 1) )); }
node_socket()      { echo "$RUNDIR/node-$1/containerd.sock"; }
# The freezer cgroup holding every process of a node: its kubelet and containerd (and so the
# shims) in system/, its pods in kubepods/ (the kubelet's cgroup root is /tfs-node-N).
node_cgroup()      { echo "tfs-node-$1"; }
FREEZER=/sys/fs/cgroup/freezer
# node_ready NODE [SINCE]: the node's Ready condition is True and (with SINCE, epoch seconds) its
# kubelet was heard after SINCE: its node Lease renewed since (the kubelet renews it every 10 s but
# posts its status only on a change or every 5 minutes, so the Ready condition's heartbeat time
# can stay old for minutes after a node comes back).
node_ready() {
  local node=$1 st renew; shift
  st=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" get node "$node" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) || return 1
  [ "$st" = True ] || return 1
  [ -z "${1:-}" ] && return 0
  renew=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" -n kube-node-lease get lease "$node" -o jsonpath='{.spec.renewTime}' 2>/dev/null) || return 1
  [ "$(date -d "$renew" +%s 2>/dev/null || echo 0)" -ge "$1" ]
}
# node_is_down INDEX: the node was lost with node-down.sh (its processes are frozen).
node_is_down() { [ "$(cat "$FREEZER/$(node_cgroup "$1")/freezer.state" 2>/dev/null)" = FROZEN ]; }

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

# containerd shims of this cluster (their command line names a containerd socket under $RUNDIR).
is_shim() {
  [ -r "/proc/$1/cmdline" ] && grep -qF -- "containerd-shim" "/proc/$1/cmdline" 2>/dev/null &&
    grep -qF -- "$RUNDIR/" "/proc/$1/cmdline" 2>/dev/null
}
cluster_shims() {
  local f
  for f in /proc/[0-9]*; do is_shim "${f#/proc/}" && echo "${f#/proc/}"; done
  return 0
}

# With no pod left running, release every pod address: host-local IPAM keeps one file per
# address, and pods killed without a CNI DEL would leak theirs.
release_pod_ips() {
  find "$STATE"/node-*/cni/networks -mindepth 2 -maxdepth 2 -type f ! -name lock -delete 2>/dev/null || true
}
