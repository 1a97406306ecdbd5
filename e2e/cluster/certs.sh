# Certificates, kubeconfigs and component configuration files; sourced by up.sh.
# Certificates are made with openssl (ECDSA P-256, 10 years) and only when missing, or when the
# host address or node name they name has changed (leaf certificates are then re-issued).

CFG=$E2E/config

# put FILE: writes stdin to FILE only when the content differs, atomically (kube-proxy exits when
# its configuration file changes under it; an unchanged file must not even be rewritten).
put() {
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXX")
  cat > "$tmp"
  if cmp -s "$tmp" "$f"; then rm -f "$tmp"; else chmod 600 "$tmp"; mv "$tmp" "$f"; fi
}

# cert NAME CN O SANS USAGE: a leaf certificate signed by the cluster CA.
#   SANS: comma-separated subjectAltName entries (may be empty); USAGE: client|server|both
cert() {
  local name=$1 cn=$2 o=$3 sans=$4 usage=$5 subj eku ext
  subj="/CN=$cn"; [ -n "$o" ] && subj="/O=$o$subj"
  case $usage in
    client) eku=clientAuth ;; server) eku=serverAuth ;; both) eku=serverAuth,clientAuth ;;
  esac
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } > "$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$CERTS/$name.key" 2>/dev/null
  openssl req -new -key "$CERTS/$name.key" -subj "$subj" -out "$CERTS/$name.csr" 2>/dev/null
  openssl x509 -req -in "$CERTS/$name.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$CERTS/$name.crt" 2>/dev/null ||
    die "openssl failed to sign $name"
  rm -f "$ext" "$CERTS/$name.csr"
  chmod 600 "$CERTS/$name.key"
}

gen_certs() {
  local ip=$1 params
  mkdir -p "$CERTS"
  if [ ! -s "$CERTS/ca.crt" ] || [ ! -s "$CERTS/ca.key" ]; then
    say "generating cluster CA and service-account keys"
    openssl ecparam -name prime256v1 -genkey -noout -out "$CERTS/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$CERTS/ca.key" -subj "/CN=tfs-e2e-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$CERTS/ca.crt" 2>/dev/null || die "openssl failed to create the CA"
    openssl genrsa -out "$CERTS/sa.key" 2048 2>/dev/null
    openssl rsa -in "$CERTS/sa.key" -pubout -out "$CERTS/sa.pub" 2>/dev/null
    chmod 600 "$CERTS/ca.key" "$CERTS/sa.key"
    rm -f "$CERTS/params"
  fi
  params="ip=$ip nodes=$NODES svc=$SERVICE_IP"
  [ "$(cat "$CERTS/params" 2>/dev/null)" = "$params" ] && return 0
  say "issuing certificates for $NODES node(s), address $ip"
  local api_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$ip,IP:$SERVICE_IP"
  cert apiserver kube-apiserver "" "$api_sans" server
  # The API server's client certificate towards kubelets (logs, exec, port-forward).
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
  cert admin kubernetes-admin system:masters "" client
  cert controller-manager system:kube-controller-manager "" "" client
  cert scheduler system:kube-scheduler "" "" client
  cert kube-proxy system:kube-proxy "" "" client
  # Each kubelet has its own identity: the NodeRestriction admission lets it write only its node.
  local n
  for n in $(node_names); do
    cert "kubelet-$n" "system:node:$n" system:nodes "" client
    cert "kubelet-serving-$n" "$n" "" "DNS:$n,DNS:localhost,IP:$ip,IP:127.0.0.1" server
  done
  echo "$params" > "$CERTS/params"
}

# kubeconfig FILE USER: a kubeconfig with the client certificate $CERTS/USER.{crt,key}, certificates
# embedded so the file can be copied. Components reach the API server on loopback.
kubeconfig() {
  local file=$1 user=$2
  local ca crt key
  ca=$(base64 -w0 < "$CERTS/ca.crt"); crt=$(base64 -w0 < "$CERTS/$user.crt"); key=$(base64 -w0 < "$CERTS/$user.key")
  put "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: tfs-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: tfs-e2e
  context:
    cluster: tfs-e2e
    user: $user
current-context: tfs-e2e
KC
}

gen_configs() {
  local ip=$1 mtu=$2
  mkdir -p "$CFG" "$STATE" "$RUNDIR"
  kubeconfig "$KUBECONFIG_ADMIN" admin
  kubeconfig "$CFG/controller-manager.kubeconfig" controller-manager
  kubeconfig "$CFG/scheduler.kubeconfig" scheduler
  kubeconfig "$CFG/kube-proxy.kubeconfig" kube-proxy

  # crictl looks for crictl.yaml beside its binary: `.e2e/bin/crictl ps` talks to node-1
  # (`crictl --runtime-endpoint unix://.e2e/run/node-N/containerd.sock` to another node).
  put "$BIN/crictl.yaml" <<EOF2
runtime-endpoint: unix://$(node_socket 1)
image-endpoint: unix://$(node_socket 1)
timeout: 30
EOF2
  chmod 644 "$BIN/crictl.yaml"
  local i
  for i in $(seq 1 "$NODES"); do gen_node_configs "$i" "$mtu"; done

  # One kube-proxy for the host: the nodes share its network stack, so one set of Service rules
  # serves every node's pods (it is not part of any node, and survives a node's loss).
  put "$CFG/kube-proxy.yaml" <<EOF2
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $CFG/kube-proxy.kubeconfig
hostnameOverride: node-1
clusterCIDR: $CLUSTER_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  # leave nf_conntrack_max as the kernel has it
  maxPerCore: 0
  min: 0
iptables:
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 0s
EOF2
}

# gen_node_configs INDEX MTU: node-INDEX's kubelet kubeconfig, containerd, CNI and kubelet files,
# all under $CFG/node-INDEX/.
gen_node_configs() {
  local i=$1 mtu=$2 n="node-$1"
  local cfg=$CFG/$n st=$STATE/$n run=$RUNDIR/$n
  mkdir -p "$cfg/cni" "$st" "$run"
  kubeconfig "$cfg/kubelet.kubeconfig" "kubelet-$n"
  # containerd (Debian's 1.6: config format version 2), all state under $E2E.
  put "$cfg/containerd.toml" <<EOF2
version = 2
root = "$st/containerd/root"
state = "$st/containerd/state"

[grpc]
  address = "$run/containerd.sock"

[ttrpc]
  address = "$run/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  enable_selinux = false
  max_container_log_line_size = 16384
  disable_apparmor = true
  # CAP_SYS_RESOURCE may be missing (it is in this VM): never ask for a negative oom_score_adj
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        # runc's state per node (its default, /run/containerd/runc, would be shared)
        Root = "$run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cfg/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF2

  # Pod network: one bridge per node, host-local addresses from the node's /24, portmap for
  # hostPort, loopback. The bridge device is created by up.sh beforehand; the host routes between
  # the nodes' bridges, and up.sh masquerades only what leaves the cluster range (the bridge
  # plugin's ipMasq would hide a pod's address from pods of other nodes).
  put "$cfg/cni/10-tfs-e2e.conflist" <<EOF2
{
  "cniVersion": "0.4.0",
  "name": "tfs-e2e-$n",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$(node_bridge "$i")",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "mtu": $mtu,
      "ipam": {
        "type": "host-local",
        "dataDir": "$st/cni/networks",
        "ranges": [[{"subnet": "$(node_pod_cidr "$i")", "gateway": "$(node_gateway "$i")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF2
  put "$cfg/cni/99-loopback.conf" <<EOF2
{"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}
EOF2

  put "$cfg/kubelet.yaml" <<EOF2
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: $(node_kubelet_port "$i")
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(node_healthz_port "$i")
tlsCertFile: $CERTS/kubelet-serving-$n.crt
tlsPrivateKeyFile: $CERTS/kubelet-serving-$n.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $CERTS/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$run/containerd.sock
imageServiceEndpoint: unix://$run/containerd.sock
cgroupDriver: cgroupfs
# the node's pods live under /tfs-node-N (frozen with the node by node-down.sh)
cgroupRoot: /$(node_cgroup "$i")
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podCIDR: $(node_pod_cidr "$i")
maxPods: 110
serializeImagePulls: false
# Images are imported by hand and can never be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
# Do not evict pods for disk or memory pressure on a shared development machine.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 30s
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
makeIPTablesUtilChains: true
containerLogMaxSize: 10Mi
containerLogMaxFiles: 3
shutdownGracePeriod: 0s
staticPodPath: ""
podLogsDir: $st/pod-logs
EOF2

}
