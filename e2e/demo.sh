#!/usr/bin/env bash
# The main job, as a user would live it: install the operator chart, create a TfsNameserver,
# write through its VIP, kill the master pod, and watch the failover with kubectl; switch over
# back with the plugin; then lose the master's whole node and watch the failover again; then a
# TfsNameserver archiving to the cluster's S3 store, and a backup taken with kubectl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export KUBECONFIG=${KUBECONFIG:-$ROOT/.e2e/kubeconfig}
K="$ROOT/.e2e/bin/kubectl"
export PATH="$ROOT/.e2e/bin:$PATH"   # kubectl finds the plugin kubectl-tfs there (make plugin)
H="$ROOT/.e2e/bin/helm"
CTL="$ROOT/target/release/tfsctl"
RUN="$ROOT/.e2e/runs/demo"
mkdir -p "$RUN"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Installing the operator chart (helm install tfs charts/tfs-operator)"
"$K" apply -f "$ROOT/examples/storageclass-local.yaml" >/dev/null
run "$H" upgrade --install tfs "$ROOT/charts/tfs-operator" --namespace tfs-system --create-namespace --wait --timeout 120s
"$K" delete tfsns demo --ignore-not-found --wait=true >/dev/null

say "Creating the demo TfsNameserver (kubectl apply -f examples/tfsnameserver.yaml)"
run "$K" apply -f "$ROOT/examples/tfsnameserver.yaml"
for i in $(seq 1 120); do
  phase=$("$K" get tfsns demo -o jsonpath='{.status.phase} {.status.ready}' 2>/dev/null || true)
  [ "$phase" = "Healthy 2/2" ] && break
  sleep 1
done
[ "$phase" = "Healthy 2/2" ] || { echo "demo did not become Healthy: $phase"; exit 1; }
for i in $(seq 1 60); do
  [ -n "$("$K" get lease demo -o jsonpath='{.metadata.annotations.tfs\.io/sync-set}')" ] && break
  sleep 1
done
run "$K" get tfsns demo
run "$K" get pods -l app.kubernetes.io/instance=demo -o wide
run kubectl tfs status demo

VIP=$("$K" get svc demo -o jsonpath='{.spec.clusterIP}'):8100
say "TLS: the operator's CA, a certificate per pod, one for clients (spec.tls in the example)"
run "$K" get secrets demo-ca demo-0-tls demo-1-tls demo-client
run "$K" get networkpolicy demo
# tfsctl takes the client certificate from the environment, as a user would export it.
TLS="$RUN/tls"; mkdir -p "$TLS"
for k in ca.crt tls.crt tls.key; do
  "$K" get secret demo-client -o go-template="{{index .data \"$k\"}}" | base64 -d > "$TLS/$k"
done
chmod 600 "$TLS/tls.key"
printf '$ %s\n' "tfsctl --addr $VIP status    # plain TCP, no certificate"
"$CTL" --addr "$VIP" status 2>&1 | tail -1 || true
export TFS_CA=$TLS/ca.crt TFS_CERT=$TLS/tls.crt TFS_KEY=$TLS/tls.key TFS_TLS_SERVER_NAME=demo
printf '$ %s\n' "TFS_CA=$TFS_CA TFS_CERT=$TFS_CERT TFS_KEY=$TFS_KEY TFS_TLS_SERVER_NAME=demo tfsctl --addr $VIP status"
"$CTL" --addr "$VIP" status | head -4

say "Writing through the VIP $VIP over TLS (tfsctl bench, every acknowledged write recorded)"
rm -f "$RUN/acked"
"$CTL" --addr "$VIP" bench --op create --count 1000000000 --concurrency 16 --sim-dataservers 3 \
  --record "$RUN/acked" --retry-for 60s > "$RUN/writer.log" 2>&1 &
WRITER=$!
trap 'kill $WRITER 2>/dev/null || true' EXIT
sleep 4
MASTER=$("$K" get lease demo -o jsonpath='{.spec.holderIdentity}')
EPOCH=$("$K" get lease demo -o jsonpath='{.spec.leaseTransitions}')
echo "acknowledged so far: $(wc -l < "$RUN/acked")   master: $MASTER   epoch: $EPOCH"

say "Failover: deleting the master pod $MASTER"
T0=$(date +%s%3N)
run "$K" delete pod "$MASTER" --grace-period=0 --force 2>/dev/null
for i in $(seq 1 300); do
  E=$("$K" get lease demo -o jsonpath='{.spec.leaseTransitions}')
  H2=$("$K" get lease demo -o jsonpath='{.spec.holderIdentity}')
  [ "$E" -gt "$EPOCH" ] && [ -n "$H2" ] && break
  sleep 0.1
done
sleep 3
run "$K" get tfsns demo
run "$K" get lease demo -o custom-columns=HOLDER:.spec.holderIdentity,EPOCH:.spec.leaseTransitions,SYNC-SET:.metadata.annotations.tfs\\.io/sync-set
run "$K" get endpointslices -l kubernetes.io/service-name=demo
CR_UID=$("$K" get tfsns demo -o jsonpath='{.metadata.uid}')
run "$K" get events --field-selector "involvedObject.uid=$CR_UID" --sort-by=.lastTimestamp
kill $WRITER 2>/dev/null || true; wait $WRITER 2>/dev/null || true; trap - EXIT
NEW_EPOCH=$("$K" get lease demo -o jsonpath='{.spec.leaseTransitions}')
FIRST=$(awk -v e="$NEW_EPOCH" -v t0="$T0" '$3==e && $NF>t0 {print $NF-t0; exit}' "$RUN/acked")
say "Failover time (master pod deleted -> first write acknowledged by the new master): ${FIRST:-?} ms"
say "Checking every acknowledged write (tfsctl verify)"
run "$CTL" --addr "$VIP" verify --record "$RUN/acked"

say "Planned switchover back with the kubectl plugin (the master drains, then hands its Lease over)"
for i in $(seq 1 60); do
  SLAVE=$("$K" get tfsns demo -o jsonpath='{.status.instances[?(@.inSyncSet==true)].name}' | awk '{print $1}')
  [ -n "$SLAVE" ] && break
  sleep 1
done
[ -n "$SLAVE" ] || { echo "no slave joined the sync set after the failover"; exit 1; }
run kubectl tfs switchover demo "$SLAVE"
run kubectl tfs status demo

MASTER=$("$K" get lease demo -o jsonpath='{.spec.holderIdentity}')
EPOCH=$("$K" get lease demo -o jsonpath='{.spec.leaseTransitions}')
NODE=$("$K" get pod "$MASTER" -o jsonpath='{.spec.nodeName}')
say "Node loss: the master $MASTER runs on $NODE; losing that node (kubelet, containerd, every container frozen, its traffic dropped)"
run "$K" get nodes
"$CTL" --addr "$VIP" bench --op create --count 1000000000 --concurrency 16 --sim-dataservers 3 \
  --record "$RUN/acked-node" --retry-for 60s > "$RUN/writer-node.log" 2>&1 &
WRITER=$!
trap 'kill $WRITER 2>/dev/null || true; make -s -C "$ROOT" node-up NODE="$NODE" >/dev/null 2>&1 || true' EXIT
sleep 3
T0=$(date +%s%3N)
run make -s -C "$ROOT" node-down NODE="$NODE"
for i in $(seq 1 300); do
  E=$("$K" get lease demo -o jsonpath='{.spec.leaseTransitions}')
  [ "$E" -gt "$EPOCH" ] && break
  sleep 0.1
done
sleep 2
run "$K" get tfsns demo
run "$K" get pods -l app.kubernetes.io/instance=demo -o wide
NEW_EPOCH=$("$K" get lease demo -o jsonpath='{.spec.leaseTransitions}')
FIRST=$(awk -v e="$NEW_EPOCH" -v t0="$T0" '$3==e && $NF>t0 {print $NF-t0; exit}' "$RUN/acked-node")
say "Failover time (node lost -> first write acknowledged by the new master): ${FIRST:-?} ms (lease: 5 s)"
say "The node comes back: the old master finds a newer epoch, refuses to serve and rejoins as a slave"
run make -s -C "$ROOT" node-up NODE="$NODE"
for i in $(seq 1 120); do
  phase=$("$K" get tfsns demo -o jsonpath='{.status.phase} {.status.ready}' 2>/dev/null || true)
  [ "$phase" = "Healthy 2/2" ] && break
  sleep 1
done
kill $WRITER 2>/dev/null || true; wait $WRITER 2>/dev/null || true; trap - EXIT
run "$K" get tfsns demo
run "$CTL" --addr "$VIP" verify --record "$RUN/acked-node"

say "Backups: a TfsNameserver archiving to the cluster's S3 store (SeaweedFS), and a backup now"
# A run of the demo starts a new history: the last run's resource, claims and archive go first (a
# nameserver never appends its history to another history's archive).
"$K" delete tfsns demo-backup --ignore-not-found --wait=true >/dev/null
"$K" delete pvc demo-backup-0-data demo-backup-1-data --ignore-not-found --wait=true >/dev/null
for key in $("$ROOT/e2e/cluster/objectstore.sh" curl "tfs-backups?list-type=2&prefix=default%2Fdemo-backup%2F" \
    | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'); do
  "$ROOT/e2e/cluster/objectstore.sh" curl "tfs-backups/$key" -X DELETE >/dev/null
done
run "$ROOT/e2e/cluster/objectstore.sh" secret default tfs-backup-s3
run "$K" apply -f "$ROOT/examples/tfsnameserver-backup.yaml"
for i in $(seq 1 120); do
  phase=$("$K" get tfsns demo-backup -o jsonpath='{.status.phase} {.status.ready}' 2>/dev/null || true)
  [ "$phase" = "Healthy 2/2" ] && break
  sleep 1
done
BVIP=$("$K" get svc demo-backup -o jsonpath='{.spec.clusterIP}'):8100
for k in ca.crt tls.crt tls.key; do
  "$K" get secret demo-backup-client -o go-template="{{index .data \"$k\"}}" | base64 -d > "$TLS/backup-$k"
done
chmod 600 "$TLS/backup-tls.key"
TFS_CA=$TLS/backup-ca.crt TFS_CERT=$TLS/backup-tls.crt TFS_KEY=$TLS/backup-tls.key TFS_TLS_SERVER_NAME=demo-backup \
  "$CTL" --addr "$BVIP" bench --op create --count 20000 --concurrency 16 --sim-dataservers 3 > "$RUN/backup-writer.log" 2>&1
tail -1 "$RUN/backup-writer.log"
run kubectl tfs backup demo-backup
run "$K" get tfsns demo-backup -o jsonpath='{.status.backup}{"\n"}'
eval "$("$ROOT/e2e/cluster/objectstore.sh" env)"
run "$CTL" backup ls --archive s3://tfs-backups/default/demo-backup --archive-endpoint "$TFS_S3_ENDPOINT"
run "$K" get tfsbackup

cat <<MSG

The cluster keeps running. Explore it:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$K
  kubectl get tfsns -w                                   # MASTER, EPOCH, READY, PHASE, LAST-FAILOVER
  kubectl get lease demo -o yaml                         # the heartbeat lease: holder, transitions = epoch
  export PATH=$ROOT/.e2e/bin:\$PATH                     # kubectl tfs (the plugin)
  kubectl tfs status demo                                # master, epoch, lease, every instance
  kubectl tfs switchover demo <slave pod>                # planned switchover, waits for the outcome
  make node-down NODE=node-2 / make node-up NODE=node-2  # lose a node of the cluster, bring it back
  kubectl get tfsbackup; kubectl tfs backup demo-backup  # backups (docs/OPERATIONS.md: backup and restore runbook)
  kubectl drain <master's node> --ignore-daemonsets      # a switchover first, then the eviction
  export TFS_CA=$TFS_CA TFS_CERT=$TFS_CERT TFS_KEY=$TFS_KEY TFS_TLS_SERVER_NAME=demo
  $CTL --addr $VIP status                  # the master's role, epoch, seqs, sync set (over TLS)
  make cluster-down                                      # stop everything
MSG
