#!/usr/bin/env bash
# Stops everything `make cluster` started, by recorded pid (never by name), and removes what it
# created on the host: pod sandboxes (through the CRI, so CNI releases addresses and veths),
# containerd shims, the pod bridge, the iptables chains of kube-proxy/kubelet/CNI, and mounts
# under $E2E. With --clean, also wipes the cluster state under $E2E (keeps bin/, images/), the
# object store's data and credentials included.
source "$(dirname "$0")/lib.sh"
CFG=$E2E/config
CLEAN=0; [ "${1:-}" = --clean ] && CLEAN=1

# (commands to node $NI's containerd)
crictl_() { timeout 60 "$BIN/crictl" --runtime-endpoint "unix://$(node_socket "$NI")" --timeout 30s "$@"; }
ctr_() { timeout 60 ctr --address "$(node_socket "$NI")" -n k8s.io "$@"; }

# stop_pods INDEX: node INDEX's pod sandboxes and their containers, while its containerd runs.
stop_pods() {
  NI=$1
  is_running "containerd-node-$NI" "$CFG/node-$NI/containerd.toml" || return 0
  local pods
  if [ -x "$BIN/crictl" ]; then
    pods=$(crictl_ pods -q 2>/dev/null || true)
    if [ -n "$pods" ]; then
      say "stopping $(echo "$pods" | wc -l) pod sandbox(es) of node-$NI through the CRI"
      for p in $pods; do crictl_ stopp "$p" >/dev/null 2>&1 || warn "crictl stopp $p failed"; done
      for p in $pods; do crictl_ rmp -f "$p" >/dev/null 2>&1 || warn "crictl rmp $p failed"; done
    fi
  else
    warn "crictl missing: stopping containers with ctr (CNI addresses may leak)"
  fi
  # whatever task is still there (containers created outside the CRI, failures above)
  local t
  for t in $(ctr_ tasks ls -q 2>/dev/null || true); do
    ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for t in $(ctr_ tasks ls -q 2>/dev/null || true); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
}

# Shims and container processes left when containerd is gone (it crashed or was killed): the
# container processes are found by the init.pid files of the task bundles, their shims as their
# parents, and any other shim by the address of this cluster's containerd on its command line.
kill_leftover_shims() {
  local f pid ppid victims=()
  for f in "$STATE"/node-*/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    victims+=("$pid")
    ppid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$ppid" ] && is_shim "$ppid" && victims+=("$ppid")
  done
  victims+=($(cluster_shims))
  [ ${#victims[@]} -gt 0 ] || return 0
  warn "killing leftover shims/containers of this cluster: ${victims[*]}"
  kill -KILL "${victims[@]}" 2>/dev/null || true
  sleep 0.5
}

# Chains created by kube-proxy, the kubelet (KUBE-*), the CNI plugins (CNI-*) and up.sh /
# node-down.sh (TFS-E2E-*).
clean_iptables() {
  local ipt t
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    for t in filter nat mangle raw; do
      local dump; dump=$($ipt-save -t $t 2>/dev/null) || continue
      # rules in the built-in chains that jump to our chains
      { echo "$dump" | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-|TFS-E2E-)' || true; } |
        while read -r rule; do
          # shellcheck disable=SC2086
          eval "$ipt -t $t -D ${rule#-A }" 2>/dev/null || true
        done
      local chains; chains=$(echo "$dump" | sed -n 's/^:\(\(KUBE\|CNI\|TFS-E2E\)-[^ ]*\) .*/\1/p')
      for c in $chains; do $ipt -t $t -F "$c" 2>/dev/null || true; done
      for c in $chains; do $ipt -t $t -X "$c" 2>/dev/null || true; done
    done
  done
}

unmount_all() {
  local m n=0
  # deepest first; mountinfo field 5 is the mount point (octal escapes for spaces)
  for m in $(awk -v p="$E2E/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | uniq); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "cannot unmount $m"
    n=$((n+1))
  done
  [ $n -eq 0 ] || say "unmounted $n mount(s) under ${E2E#$ROOT/}/"
}

# Every node's cgroups: thawed first (a frozen process cannot even die), removed at the end.
thaw_nodes() {
  local d
  for d in "$FREEZER"/tfs-node-*/; do
    [ -d "$d" ] || continue
    [ "$(cat "$d/freezer.state" 2>/dev/null)" = THAWED ] || { say "thawing $(basename "$d")"; echo THAWED > "$d/freezer.state"; }
  done
}
remove_cgroups() {
  local d
  # deepest first; a group still holding a process stays (and is reported)
  for d in $(find /sys/fs/cgroup/*/tfs-node-* -depth -type d 2>/dev/null); do
    rmdir "$d" 2>/dev/null || warn "cgroup $d not removed (a process is still in it)"
  done
}

main() {
  local i
  mkdir -p "$PIDS"
  thaw_nodes
  stop local-volumes "$BIN/local-volumes" 5
  "$CLUSTER_DIR/objectstore.sh" stop
  stop kube-proxy "$BIN/kube-proxy"
  # (the names of a single-node cluster of earlier versions, so an old cluster stops too)
  stop kubelet "$BIN/kubelet" 30
  stop containerd "$CFG/containerd.toml" 30
  for i in $(seq 1 9); do
    [ -e "$PIDS/kubelet-node-$i.pid" ] || [ -e "$PIDS/containerd-node-$i.pid" ] || continue
    stop "kubelet-node-$i" "$BIN/kubelet --config=$CFG/node-$i/" 30
    stop_pods "$i"
    stop "containerd-node-$i" "$CFG/node-$i/containerd.toml" 30
  done
  kill_leftover_shims
  stop_all kube-scheduler "$BIN/kube-scheduler" kube-controller-manager "$BIN/kube-controller-manager" \
    kube-apiserver "$BIN/kube-apiserver"
  stop etcd "$BIN/etcd" 30

  say "removing iptables chains, the pod bridges, cgroups and mounts"
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  clean_iptables
  clean_netns
  release_pod_ips
  local br
  for br in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^cni[0-9]$' || true); do
    ip link delete "$br" || true
  done
  unmount_all
  remove_cgroups

  if [ $CLEAN = 1 ]; then
    say "wiping cluster state under ${E2E#$ROOT/}/ (keeping bin/ and images/)"
    # buildah storage may hold overlay mounts of its own
    [ -d "$E2E/buildah" ] && buildah --root "$E2E/buildah/storage" --runroot "$E2E/buildah/run" rm --all >/dev/null 2>&1 || true
    unmount_all
    rm -rf "$STATE" "$CERTS" "$CFG" "$RUNDIR" "$PIDS" "$E2E/buildah" "$E2E/kubeconfig" "$E2E/host-ip" \
      "$E2E"/images/*.imported* "$E2E/nodes" \
      "$OBJSTORE"
    # component logs go, build logs stay
    [ -d "$LOGS" ] && find "$LOGS" -maxdepth 1 -type f ! -name 'build-*' -delete
  fi

  # Report anything of ours still alive.
  local left=() f
  for f in "$PIDS"/*.pid; do [ -e "$f" ] && left+=("$(basename "$f" .pid)"); done
  [ ${#left[@]} -eq 0 ] || die "still running: ${left[*]}"
  say "cluster stopped"
}

main "$@"
