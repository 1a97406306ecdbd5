#!/usr/bin/env bash
# Loses a node as a machine failure would: its traffic is dropped (to and from its pods, to its
# kubelet), then its kubelet, its containerd, every shim and every container process of it are
# frozen (cgroup v1 freezer: the whole group at once, SIGSTOP-like, nothing runs or answers).
# The API server sees the node stop reporting; its pods keep their state and resume as they were
# with node-up.sh, as after a network partition heals.
# Usage: node-down.sh NODE   (node-1 ... node-N)
source "$(dirname "$0")/lib.sh"
[ $# -eq 1 ] || die "usage: node-down.sh NODE (nodes: $(node_names | tr '\n' ' '))"
i=$(node_index "$1")
cg=$FREEZER/$(node_cgroup "$i")
[ -f "$cg/freezer.state" ] || die "node-$i has no freezer cgroup ($cg): is the cluster up?"
node_is_down "$i" && { say "node-$i is already down"; exit 0; }

# The cut: one chain, jumped to first from INPUT, OUTPUT and FORWARD, so it wins over every
# ACCEPT of kube-proxy or CNI, established connections included (conntrack does not bypass it).
iptables -N TFS-E2E-CUT 2>/dev/null || true
for c in INPUT OUTPUT FORWARD; do
  iptables -C "$c" -j TFS-E2E-CUT 2>/dev/null || iptables -I "$c" 1 -j TFS-E2E-CUT
done
cidr=$(node_pod_cidr "$i")
# the node's pod addresses, .2 to .254: its bridge's own address (.1) is also the host's source
# address towards ClusterIPs (the Service range is routed to node-1's bridge), which must not go
pods="${cidr%.0/24}.2-${cidr%.0/24}.254"
tag="tfs-e2e node-$i down"
iptables -A TFS-E2E-CUT -m iprange --src-range "$pods" -m comment --comment "$tag" -j DROP
iptables -A TFS-E2E-CUT -m iprange --dst-range "$pods" -m comment --comment "$tag" -j DROP
iptables -A TFS-E2E-CUT -p tcp --dport "$(node_kubelet_port "$i")" -m comment --comment "$tag" -j DROP

echo FROZEN > "$cg/freezer.state"
for _ in $(seq 100); do
  [ "$(cat "$cg/freezer.state")" = FROZEN ] && break
  sleep 0.1
done
[ "$(cat "$cg/freezer.state")" = FROZEN ] || warn "node-$i is still $(cat "$cg/freezer.state") after 10 s"
n=$(find "$cg" -name cgroup.procs -exec cat {} + | wc -l)
say "node-$i down: $n process(es) frozen, traffic of its pods ($pods) and of its kubelet (port $(node_kubelet_port "$i")) dropped; bring it back with 'make node-up NODE=node-$i'"
