#!/usr/bin/env bash
# Starts (or completes) the local single-node cluster; idempotent: what runs is left alone.
# Order: build missing binaries, host network setup, certificates and configs, etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd (+ image import),
# kubelet, kube-proxy; then waits for the node to be Ready.
source "$(dirname "$0")/lib.sh"
source "$CLUSTER_DIR/certs.sh"
mkdir -p "$BIN" "$LOGS" "$PIDS" "$STATE" "$RUNDIR"

# start NAME MATCH CMD...: runs CMD in its own session (so it outlives make and can be stopped
# as a process group), logs to $LOGS/NAME.log, records the pid in $PIDS/NAME.pid.
# MATCH is a string of its command line that identifies our instance. A running instance is left
# alone unless its command line or its configuration files (FILES[name] below) changed since it
# was started: then it is restarted. Returns 0 when it (re)started the component.
declare -A FILES=(
  [containerd]="$CFG/containerd.toml"
  [kubelet]="$CFG/kubelet.yaml $CFG/kubelet.kubeconfig"
  [kube-proxy]="$CFG/kube-proxy.yaml"
)
start() {
  local name=$1 match=$2; shift 2
  local fp f
  fp=$( { echo "$*"; for f in ${FILES[$name]:-}; do cat "$f"; done; } | sha256sum | cut -c1-16)
  if is_running "$name" "$match"; then
    if [ "$(cat "$PIDS/$name.fp" 2>/dev/null)" = "$fp" ]; then
      say "$name already running (pid $(pid_of "$name"))"
      return 1
    fi
    say "restarting $name: its flags or configuration changed"
    # (the API server drains open watches for a long time: no need to wait for that)
    stop "$name" "$match" 10
  fi
  say "starting $name (log: ${LOGS#$ROOT/}/$name.log)"
  # keep one previous log when it grew large
  [ "$(stat -c %s "$LOGS/$name.log" 2>/dev/null || echo 0)" -lt 50000000 ] || mv -f "$LOGS/$name.log" "$LOGS/$name.log.1"
  echo "=== $(date -Is) start: $*" >> "$LOGS/$name.log"
  setsid "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
  echo "$fp" > "$PIDS/$name.fp"
  return 0
}

# await NAME MATCH TIMEOUT WHAT CMD...: waits for CMD to succeed; fails early if NAME died.
await() {
  local name=$1 match=$2 timeout=$3 what=$4; shift 4
  local end=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      tail -25 "$LOGS/$name.log" >&2 || true
      die "$name exited while waiting for $what (log: $LOGS/$name.log)"
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      tail -25 "$LOGS/$name.log" >&2 || true
      die "timed out after ${timeout}s waiting for $what (log: $LOGS/$name.log)"
    fi
    sleep 1
  done
}

check_deps() {
  local missing=()
  for c in containerd containerd-shim-runc-v2 runc ctr iptables ip6tables conntrack buildah gcc openssl curl; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(/usr/lib/cni/bridge)
  [ -x /bin/busybox ] || missing+=(busybox)
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run 'make deps-cluster')"
  command -v go >/dev/null || die "go is not installed"
}

host_setup() {
  local mtu=$1
  command -v modprobe >/dev/null && { modprobe br_netfilter 2>/dev/null || true; modprobe overlay 2>/dev/null || true; }
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || die "br_netfilter is not available in this kernel"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1
  # The pod bridge exists before any pod, so the Service range can be routed to it: a packet to a
  # ClusterIP that kube-proxy does not rewrite stays on this machine instead of taking the
  # default route.
  if ! ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    ip link add "$CNI_BRIDGE" type bridge
    ip link set "$CNI_BRIDGE" mtu "$mtu"
  fi
  grep -q " $POD_GATEWAY/" <<< "$(ip addr show dev "$CNI_BRIDGE")" || ip addr add "$POD_GATEWAY/${POD_CIDR#*/}" dev "$CNI_BRIDGE"
  ip link set "$CNI_BRIDGE" up
  ip route replace "$SERVICE_CIDR" dev "$CNI_BRIDGE" src "$POD_GATEWAY"
}

# node_ready [SINCE]: the node's Ready condition is True, and (with SINCE, epoch seconds) was
# reported after SINCE, so a stale status from before a restart does not count.
node_ready() {
  local out st hb
  out=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" get node "$NODE_NAME" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) || return 1
  read -r st hb <<< "$out"
  [ "$st" = True ] || return 1
  [ -z "${1:-}" ] || [ "$(date -d "$hb" +%s 2>/dev/null || echo 0)" -ge "$1" ]
}

main() {
  local ip mtu dev started=0
  check_deps
  say "building missing binaries into ${BIN#$ROOT/}/ (a cold build takes a long while; logs in ${LOGS#$ROOT/}/build-*.log)"
  "$CLUSTER_DIR/build.sh" all
  ip=$(host_ip)
  dev=$(ip -4 route show default | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -1)
  mtu=$(cat "/sys/class/net/${dev:-lo}/mtu" 2>/dev/null || echo 1500); [ "$mtu" -le 1500 ] || mtu=1500
  host_setup "$mtu"
  gen_certs "$ip"
  gen_configs "$ip" "$mtu"
  local C=$CERTS CA=$CERTS/ca.crt

  start etcd "$BIN/etcd" "$BIN/etcd" --name tfs-e2e --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster tfs-e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --log-level warn && started=1
  await etcd "$BIN/etcd" 60 "etcd health" curl -fsS http://127.0.0.1:2379/health

  start kube-apiserver "$BIN/kube-apiserver" "$BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --advertise-address="$ip" --bind-address=0.0.0.0 --secure-port="$API_PORT" \
    --tls-cert-file="$C/apiserver.crt" --tls-private-key-file="$C/apiserver.key" \
    --client-ca-file="$CA" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$C/sa.pub" --service-account-signing-key-file="$C/sa.key" \
    --kubelet-client-certificate="$C/apiserver-kubelet-client.crt" --kubelet-client-key="$C/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$CA" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --event-ttl=1h --v=1 && started=1
  await kube-apiserver "$BIN/kube-apiserver" 120 "kube-apiserver /readyz" \
    curl -fsS --cacert "$CA" "https://127.0.0.1:$API_PORT/readyz"

  start kube-controller-manager "$BIN/kube-controller-manager" "$BIN/kube-controller-manager" \
    --kubeconfig="$CFG/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CFG/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CFG/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --service-account-private-key-file="$C/sa.key" --root-ca-file="$CA" \
    --cluster-signing-cert-file="$CA" --cluster-signing-key-file="$C/ca.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
    --v=1 && started=1
  start kube-scheduler "$BIN/kube-scheduler" "$BIN/kube-scheduler" \
    --kubeconfig="$CFG/scheduler.kubeconfig" \
    --authentication-kubeconfig="$CFG/scheduler.kubeconfig" \
    --authorization-kubeconfig="$CFG/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --v=1 && started=1

  # Leftovers of a cluster whose processes were killed from outside: network namespaces and pod
  # addresses (only when no pod of it survives).
  if ! is_running containerd "$CFG/containerd.toml" && [ -z "$(cluster_shims)" ]; then
    clean_netns
    release_pod_ips
  fi
  start containerd "$CFG/containerd.toml" /usr/bin/containerd --config "$CFG/containerd.toml" && started=1
  await containerd "$CFG/containerd.toml" 60 "containerd" \
    ctr --address "$RUNDIR/containerd.sock" version
  [ -s "$E2E/images/pause.tar" ] || "$CLUSTER_DIR/image.sh" pause
  "$CLUSTER_DIR/image.sh" import

  await kube-controller-manager "$BIN/kube-controller-manager" 60 "kube-controller-manager /healthz" \
    curl -fsSk https://127.0.0.1:10257/healthz
  await kube-scheduler "$BIN/kube-scheduler" 60 "kube-scheduler /healthz" \
    curl -fsSk https://127.0.0.1:10259/healthz

  local kubelet_since=
  start kubelet "$BIN/kubelet" "$BIN/kubelet" --config="$CFG/kubelet.yaml" \
    --kubeconfig="$CFG/kubelet.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$ip" \
    --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" --v=1 && { started=1; kubelet_since=$(( $(date +%s) - 1 )); }
  await kubelet "$BIN/kubelet" 90 "kubelet /healthz" curl -fsS http://127.0.0.1:10248/healthz

  start kube-proxy "$BIN/kube-proxy" "$BIN/kube-proxy" --config="$CFG/kube-proxy.yaml" --v=1 && started=1
  await kube-proxy "$BIN/kube-proxy" 60 "kube-proxy /healthz" curl -fsS http://127.0.0.1:10256/healthz

  say "waiting for node $NODE_NAME to be Ready"
  await kubelet "$BIN/kubelet" 180 "node $NODE_NAME Ready" node_ready $kubelet_since

  # Node-local PersistentVolumes (a Rust host process of this repository; see Storage in README.md)
  # and the default StorageClass that uses them.
  if [ ! -x "$BIN/local-volumes" ] || [ -n "$(find "$ROOT/e2e/src/local_volumes.rs" "$ROOT/e2e/src/bin/local-volumes.rs" -newer "$BIN/local-volumes" -print -quit)" ]; then
    say "building local-volumes (the cluster's volume provisioner)"
    # --workspace: the workspace's features, as `make release` builds them, so nothing is rebuilt
    (cd "$ROOT" && cargo build --release -q --workspace --bin local-volumes) || die "cannot build local-volumes"
    install -m 0755 "$ROOT/target/release/local-volumes" "$BIN/local-volumes.new" && mv -f "$BIN/local-volumes.new" "$BIN/local-volumes"
    stop local-volumes "$BIN/local-volumes" 5
  fi
  start local-volumes "$BIN/local-volumes" env KUBECONFIG="$KUBECONFIG_ADMIN" "$BIN/local-volumes" --root "$E2E/volumes" && started=1
  local class; class=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" get storageclass standard -o jsonpath='{.provisioner}' 2>/dev/null || true)
  # (a class's provisioner cannot change: one left by an older cluster is replaced)
  [ -z "$class" ] || [ "$class" = tfs.io/local-volumes ] || kubectl --kubeconfig "$KUBECONFIG_ADMIN" delete storageclass standard >/dev/null
  kubectl --kubeconfig "$KUBECONFIG_ADMIN" apply -f "$ROOT/examples/storageclass-local.yaml" >/dev/null ||
    die "cannot apply examples/storageclass-local.yaml"

  local sv
  sv=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)
  echo "$ip" > "$E2E/host-ip"
  echo
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  say "cluster up: node $NODE_NAME Ready, kubernetes $sv, API https://$ip:$API_PORT, $( [ $started = 1 ] && echo "components started" || echo "all already running"), $(( $(date +%s) - _T0 ))s"
}

main "$@"
