#!/usr/bin/env bash
# Brings back a node lost with node-down.sh: its traffic flows again and its processes resume
# where they were frozen; then waits until its kubelet is heard again with the node Ready (node_ready), and gives it
# the images imported while it was down.
# Usage: node-up.sh NODE
source "$(dirname "$0")/lib.sh"
[ $# -eq 1 ] || die "usage: node-up.sh NODE (nodes: $(node_names | tr '\n' ' '))"
i=$(node_index "$1")
cg=$FREEZER/$(node_cgroup "$i")
tag="tfs-e2e node-$i down"
# every rule of this node's cut, by its comment
iptables -S TFS-E2E-CUT 2>/dev/null | grep -F -- "\"$tag\"" | while read -r rule; do
  eval "iptables -D ${rule#-A }"
done
if node_is_down "$i"; then
  echo THAWED > "$cg/freezer.state"
  say "node-$i thawed, its traffic restored"
else
  say "node-$i was not down"
fi
since=$(date +%s)
for _ in $(seq 120); do
  if node_ready "node-$i" "$since"; then
    "$CLUSTER_DIR/image.sh" import
    say "node-$i Ready again after $(( $(date +%s) - since ))s"
    exit 0
  fi
  sleep 1
done
die "node-$i not Ready 120 s after it came back"
