#!/usr/bin/env bash
# Starts (or completes) the local cluster of NODES nodes (default 3); idempotent: what runs is
# left alone (a node lost with node-down.sh stays lost).
# Order: build missing binaries, host network setup, certificates and configs, etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler; per node: containerd (+ image import),
# kubelet; kube-proxy; then waits for every node to be Ready; local-volumes; the object store.
# `up.sh object-store`: only (re)starts the object store (SeaweedFS, see objectstore.sh).
source "$(dirname "$0")/lib.sh"
source "$CLUSTER_DIR/certs.sh"
mkdir -p "$BIN" "$LOGS" "$PIDS" "$STATE" "$RUNDIR"

# start NAME MATCH CMD...: runs CMD in its own session (so it outlives make and can be stopped
# as a process group), logs to $LOGS/NAME.log, records the pid in $PIDS/NAME.pid.
# MATCH is a string of its command line that identifies our instance. A running instance is left
# alone unless its command line or its configuration files (FILES[name] below) changed since it
# was started: then it is restarted. Returns 0 when it (re)started the component.
declare -A FILES=(
  [kube-proxy]="$CFG/kube-proxy.yaml"
  [objectstore]="$OBJSTORE/s3.json $OBJSTORE/config/master.toml"
)
for _n in $(node_names); do
  FILES[containerd-$_n]="$CFG/$_n/containerd.toml"
  FILES[kubelet-$_n]="$CFG/$_n/kubelet.yaml $CFG/$_n/kubelet.kubeconfig"
done
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

DEVICE_PLUGIN_SOCKET=/var/lib/kubelet/device-plugins/kubelet.sock
# socket_made_since PATH T: PATH is a socket whose inode changed at or after T (epoch seconds).
socket_made_since() { [ -S "$1" ] && [ "$(stat -c %Z "$1")" -ge "$2" ]; }

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
  local mtu=$1 i br
  command -v modprobe >/dev/null && { modprobe br_netfilter 2>/dev/null || true; modprobe overlay 2>/dev/null || true; }
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || die "br_netfilter is not available in this kernel"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1
  # One bridge per node, existing before any pod; the host routes between them (pods of different
  # nodes reach each other with their own addresses).
  for i in $(seq 1 "$NODES"); do
    br=$(node_bridge "$i")
    if ! ip link show "$br" >/dev/null 2>&1; then
      ip link add "$br" type bridge
      ip link set "$br" mtu "$mtu"
    fi
    # A bridge whose address was not set takes the lowest address of its ports, and changes it
    # when that port goes: the pods' cached neighbour entry for the gateway then names an address
    # no port answers, and a pod of that node is cut off from the host and the other nodes (seen
    # when the operator's pod of the node was deleted). An address set explicitly stays.
    [ "$(cat "/sys/class/net/$br/addr_assign_type")" = 3 ] || ip link set "$br" address "$(node_bridge_mac "$i")"
    grep -q " $(node_gateway "$i")/" <<< "$(ip addr show dev "$br")" || ip addr add "$(node_gateway "$i")/24" dev "$br"
    ip link set "$br" up
  done
  # The Service range is routed to node-1's bridge, so a packet to a ClusterIP that kube-proxy
  # does not rewrite stays on this machine instead of taking the default route.
  ip route replace "$SERVICE_CIDR" dev "$(node_bridge 1)" src "$(node_gateway 1)"
  # Pod traffic leaving the cluster range is masqueraded; inside it, addresses are kept.
  iptables -t nat -N TFS-E2E-MASQ 2>/dev/null || true
  iptables -t nat -C TFS-E2E-MASQ -d "$CLUSTER_CIDR" -j RETURN 2>/dev/null || iptables -t nat -A TFS-E2E-MASQ -d "$CLUSTER_CIDR" -j RETURN
  iptables -t nat -C TFS-E2E-MASQ -d 224.0.0.0/4 -j RETURN 2>/dev/null || iptables -t nat -A TFS-E2E-MASQ -d 224.0.0.0/4 -j RETURN
  iptables -t nat -C TFS-E2E-MASQ -j MASQUERADE 2>/dev/null || iptables -t nat -A TFS-E2E-MASQ -j MASQUERADE
  iptables -t nat -C POSTROUTING -s "$CLUSTER_CIDR" -j TFS-E2E-MASQ 2>/dev/null || iptables -t nat -A POSTROUTING -s "$CLUSTER_CIDR" -j TFS-E2E-MASQ
}

# node_cgroups INDEX: the node's cgroup root /tfs-node-N in every cgroup (v1) hierarchy (the
# kubelet wants it to exist), and the freezer group system/ its kubelet and containerd run in.
node_cgroups() {
  local cg; cg=$(node_cgroup "$1")
  local h
  [ -d "$FREEZER" ] || die "no cgroup v1 freezer at $FREEZER (node-down needs it)"
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    case $(basename "$h") in unified) continue ;; esac
    [ -d "$h/$cg" ] && continue
    mkdir "$h/$cg" || die "cannot create cgroup $h/$cg"
    if [ -f "$h/cpuset.cpus" ]; then   # cpuset children start empty
      cat "$h/cpuset.cpus" > "$h/$cg/cpuset.cpus"; cat "$h/cpuset.mems" > "$h/$cg/cpuset.mems"
    fi
  done
  mkdir -p "$FREEZER/$cg/system"
}

# A command run by `sh -c "$IN_NODE" PROCS CMD...` first enters the freezer group whose
# cgroup.procs is PROCS, then becomes CMD: node-down then freezes it and every process it forks
# (containerd's shims, the kubelet's helpers).
IN_NODE='echo $$ > "$0" && exec "$@"'
node_procs() { echo "$FREEZER/$(node_cgroup "$1")/system/cgroup.procs"; }

# The object store: SeaweedFS's master, volume server, filer and S3 gateway in one process
# (`weed server`), everything but S3 on loopback; S3 on every address (pods use 10.244.0.1:8333),
# authenticated (objectstore.sh config writes the identity); bucket $S3_BUCKET created.
# weed must not see AWS_* credentials: they would add an admin identity of their own.
# Returns 0 when it (re)started the store.
object_store() {
  local rc=1
  "$CLUSTER_DIR/build.sh" weed || exit 1
  "$CLUSTER_DIR/objectstore.sh" config || exit 1
  # weed's S3 gRPC port (S3 port + 10000: an unauthenticated IAM cache API, PutIdentity ...) has
  # the S3 port's bind address: only the host itself may connect to it (down.sh removes the chain).
  local ipt grpc=$(( S3_PORT + 10000 ))
  for ipt in iptables ip6tables; do
    $ipt -N TFS-E2E-OBJSTORE 2>/dev/null || true
    $ipt -C TFS-E2E-OBJSTORE ! -i lo -p tcp --dport $grpc -j REJECT --reject-with tcp-reset 2>/dev/null ||
      $ipt -A TFS-E2E-OBJSTORE ! -i lo -p tcp --dport $grpc -j REJECT --reject-with tcp-reset
    $ipt -C INPUT -j TFS-E2E-OBJSTORE 2>/dev/null || $ipt -I INPUT 1 -j TFS-E2E-OBJSTORE
  done
  local cmd=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN GOMEMLIMIT=96MiB
    "$BIN/weed" -logtostderr -v=0 -config_dir="$OBJSTORE/config" server -dir="$OBJSTORE/data"
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=9333 -volume.port=9340 -filer -filer.port=8888
    -master.electionTimeout=1s -master.volumeSizeLimitMB=64 -volume.max=256 -master.defaultReplication=000 -master.telemetry=false
    -volume.preStopSeconds=1 -volume.index=memory
    -s3 -s3.port="$S3_PORT" -s3.ip.bind=0.0.0.0 -s3.config="$OBJSTORE/s3.json" -s3.port.grpc=$grpc
    -s3.port.iceberg=0 -s3.port.lance=0)
  # (a restart goes through objectstore.sh stop, which does not wait out weed's slow shutdown)
  if is_running objectstore "$BIN/weed" && [ "$(cat "$PIDS/objectstore.fp" 2>/dev/null)" != \
       "$( { echo "${cmd[*]}"; cat ${FILES[objectstore]}; } | sha256sum | cut -c1-16)" ]; then
    say "restarting objectstore: its flags or configuration changed"
    "$CLUSTER_DIR/objectstore.sh" stop
  fi
  start objectstore "$BIN/weed" "${cmd[@]}" && rc=0
  await objectstore "$BIN/weed" 120 "the object store's S3 API" curl -fsS "http://127.0.0.1:$S3_PORT/healthz"
  "$CLUSTER_DIR/objectstore.sh" bucket "$S3_BUCKET" || exit 1
  return $rc
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
  local n i any=0
  for n in $(node_names); do is_running "containerd-$n" "$CFG/$n/containerd.toml" && any=1; done
  if [ $any = 0 ] && [ -z "$(cluster_shims)" ]; then
    clean_netns
    release_pod_ips
  fi
  [ -s "$E2E/images/pause.tar" ] || "$CLUSTER_DIR/image.sh" pause
  for i in $(seq 1 "$NODES"); do
    n=node-$i
    node_cgroups "$i"
    start "containerd-$n" "$CFG/$n/containerd.toml" sh -c "$IN_NODE" "$(node_procs "$i")" /usr/bin/containerd --config "$CFG/$n/containerd.toml" && started=1
  done
  for n in $(node_names); do
    await "containerd-$n" "$CFG/$n/containerd.toml" 60 "containerd of $n" \
      ctr --address "$RUNDIR/$n/containerd.sock" version
  done
  "$CLUSTER_DIR/image.sh" import

  await kube-controller-manager "$BIN/kube-controller-manager" 60 "kube-controller-manager /healthz" \
    curl -fsSk https://127.0.0.1:10257/healthz
  await kube-scheduler "$BIN/kube-scheduler" 60 "kube-scheduler /healthz" \
    curl -fsSk https://127.0.0.1:10259/healthz

  # One kubelet at a time: every kubelet of this host listens on the same device-plugin socket
  # (/var/lib/kubelet/device-plugins/kubelet.sock, fixed in the kubelet whatever its --root-dir),
  # and each one empties that directory and then binds it: two starting together can lose the
  # race ("bind: address already in use") and the loser exits. The next one starts once the
  # socket was made again after this one's start. (No device plugin runs here: a later kubelet
  # unlinking an earlier one's socket costs nothing.)
  local -A since=()
  for i in $(seq 1 "$NODES"); do
    n=node-$i
    start "kubelet-$n" "$BIN/kubelet --config=$CFG/$n/" sh -c "$IN_NODE" "$(node_procs "$i")" "$BIN/kubelet" --config="$CFG/$n/kubelet.yaml" \
      --kubeconfig="$CFG/$n/kubelet.kubeconfig" --hostname-override="$n" --node-ip="$ip" \
      --root-dir="$STATE/$n/kubelet" --cert-dir="$STATE/$n/kubelet/pki" --v=1 || continue
    started=1; since[$n]=$(( $(date +%s) - 1 ))
    await "kubelet-$n" "$BIN/kubelet --config=$CFG/$n/" 90 "the device-plugin socket of $n's kubelet" \
      socket_made_since "$DEVICE_PLUGIN_SOCKET" "${since[$n]}"
  done
  for i in $(seq 1 "$NODES"); do
    await "kubelet-node-$i" "$BIN/kubelet --config=$CFG/node-$i/" 90 "kubelet of node-$i /healthz" \
      curl -fsS "http://127.0.0.1:$(node_healthz_port "$i")/healthz"
  done

  start kube-proxy "$BIN/kube-proxy" "$BIN/kube-proxy" --config="$CFG/kube-proxy.yaml" --v=1 && started=1
  await kube-proxy "$BIN/kube-proxy" 60 "kube-proxy /healthz" curl -fsS http://127.0.0.1:10256/healthz

  for n in $(node_names); do
    say "waiting for node $n to be Ready"
    await "kubelet-$n" "$BIN/kubelet --config=$CFG/$n/" 180 "node $n Ready" node_ready "$n" ${since[$n]:-}
  done
  # Nodes of an earlier, larger cluster (NODES was bigger): their kubelets are gone.
  local extra
  extra=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" get nodes -o name | sed 's|^node/||' | grep -vxF "$(node_names)" || true)
  [ -z "$extra" ] || { say "removing nodes not in this cluster: $extra"; kubectl --kubeconfig "$KUBECONFIG_ADMIN" delete node $extra >/dev/null; }
  echo "$NODES" > "$E2E/nodes"

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

  object_store && started=1

  local sv
  sv=$(kubectl --kubeconfig "$KUBECONFIG_ADMIN" version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)
  echo "$ip" > "$E2E/host-ip"
  echo
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  say "cluster up: $NODES node(s) Ready ($(node_names | tr '\n' ' ' | sed 's/ $//')), kubernetes $sv, API https://$ip:$API_PORT, $( [ $started = 1 ] && echo "components started" || echo "all already running"), $(( $(date +%s) - _T0 ))s"
}

case ${1:-} in
  object-store) object_store || true; say "object store up: $("$CLUSTER_DIR/objectstore.sh" endpoint) (pods), bucket $S3_BUCKET" ;;
  *) main "$@" ;;
esac
