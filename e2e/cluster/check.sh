#!/usr/bin/env bash
# Proves the running cluster is real and whole. Exits non-zero at the first failure.
source "$(dirname "$0")/lib.sh"
export KUBECONFIG=$KUBECONFIG_ADMIN
NS=cluster-check
PASSED=0
k() { kubectl "$@"; }
ok() { PASSED=$((PASSED+1)); say "ok: $*"; }
fail() {
  say "FAILED: $*" >&2
  if k get ns "$NS" >/dev/null 2>&1; then
    k -n "$NS" get all -o wide >&2 2>/dev/null || true
    k -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -15 >&2 || true
  fi
  echo "$PASSED passed, 1 failed"
  exit 1
}
cleanup() { k delete ns "$NS" --ignore-not-found --wait=true --timeout=90s >/dev/null 2>&1 || warn "namespace $NS not deleted"; }

[ -s "$KUBECONFIG" ] && [ -x "$BIN/kubectl" ] || fail "no cluster: run 'make cluster' first"

# 1. every node Ready
for n in $(node_names); do
  st=$(k get node "$n" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>&1) || fail "cannot get node $n: $st"
  [ "$st" = True ] || fail "node $n is not Ready ($st)"
done
ok "$NODES node(s) Ready: $(node_names | tr '\n' ' ')"

# 1b. each node's pod bridge keeps its address when ports come and go (see up.sh host_setup)
for i in $(seq 1 "$NODES"); do
  br=$(node_bridge "$i")
  [ "$(cat "/sys/class/net/$br/addr_assign_type" 2>/dev/null)" = 3 ] ||
    fail "bridge $br has no fixed address: it would change when a pod of node-$i goes, cutting the others off"
done
ok "$NODES pod bridge(s) with a fixed address"

# 2. server version
sv=$(k version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)
case $sv in v1.36.*) ok "server version $sv" ;; *) fail "server version is '$sv', want v1.36.x" ;; esac
kv=$(k get node node-1 -o jsonpath='{.status.nodeInfo.kubeletVersion}')
case $kv in v1.36.*) ok "kubelet version $kv" ;; *) fail "kubelet reports '$kv', want v1.36.x" ;; esac

# 3. unauthenticated requests are refused
ip=$(host_ip)
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://$ip:$API_PORT/api/v1/namespaces")
case $code in 401|403) ok "unauthenticated GET /api/v1/namespaces refused ($code)" ;; *) fail "unauthenticated request got HTTP $code, want 401/403" ;; esac

# 4. helm
hv=$(helm version --short 2>&1) || fail "helm version: $hv"
hl=$(helm list -A 2>&1) || fail "helm list -A: $hl"
ok "helm $hv (helm list -A talks to the cluster)"

# 5. a Deployment of a TCP server becomes Available
"$CLUSTER_DIR/image.sh" echo >/dev/null
cleanup
trap cleanup EXIT
k create ns "$NS" >/dev/null
sed "s/NODES_COUNT/$NODES/" <<'YAML' | k -n "$NS" apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: NODES_COUNT
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 2
      # one per node, so the checks below cross nodes
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: echo}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: echo
        image: localhost/e2e-echo:local
        imagePullPolicy: Never
        args: [serve, "8080"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
YAML
k -n "$NS" wait deploy/echo --for=condition=Available --timeout=120s >/dev/null || fail "Deployment echo not Available within 120s"
spread=$(k -n "$NS" get pod -l app=echo -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
[ "$spread" = "$NODES" ] || fail "echo pods on $spread node(s), want one on each of $NODES"
ok "Deployment echo Available ($NODES replicas, one per node)"

# 6. the Service's ClusterIP answers from the host (kube-proxy iptables rules)
cip=$(k -n "$NS" get svc echo -o jsonpath='{.spec.clusterIP}')
out=
for _ in $(seq 30); do out=$("$BIN/e2e-echo" connect "$cip" 80 3 2>&1) && break; out=; sleep 1; done
grep -q '^hello from echo-' <<< "$out" || fail "Service echo ($cip:80) not reachable from the host"
ok "Service ClusterIP $cip:80 reachable from the host: $(echo "$out" | head -1)"

# 7. from inside a pod: the `kubernetes` Service (the API) and the echo Service; this also
#    exercises kubectl exec (API server -> kubelet)
pod=$(k -n "$NS" get pod -l app=echo -o jsonpath='{.items[0].metadata.name}')
out=$(k -n "$NS" exec "$pod" -- sh -c 'e2e-echo connect $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT 5' 2>&1) ||
  fail "pod $pod cannot reach the kubernetes Service: $out"
ok "pod reaches the API through the kubernetes Service (kubectl exec): $(echo "$out" | tail -1)"
out=$(k -n "$NS" exec "$pod" -- e2e-echo connect "$cip" 80 5 2>&1) || fail "pod $pod cannot reach Service echo: $out"
ok "pod reaches Service echo: $(echo "$out" | head -1)"
# pod to pod across nodes, by pod address (no Service, no NAT): the echo server names itself
src_node=$(k -n "$NS" get pod "$pod" -o jsonpath='{.spec.nodeName}')
for target in $(k -n "$NS" get pod -l app=echo -o jsonpath='{range .items[*]}{.metadata.name},{.status.podIP},{.spec.nodeName}{"\n"}{end}'); do
  IFS=, read -r tname tip tnode <<< "$target"
  [ "$tnode" = "$src_node" ] && continue
  out=$(k -n "$NS" exec "$pod" -- e2e-echo connect "$tip" 8080 5 2>&1) || fail "pod $pod ($src_node) cannot reach pod $tname at $tip ($tnode): $out"
  grep -q "^hello from $tname" <<< "$out" || fail "pod $pod reached $tip but not $tname: $out"
  ok "pod on $src_node reaches pod $tname on $tnode at $tip"
done

# 8. the API from a pod with its service account token (projected volume), and kubectl logs
k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: api-client}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: localhost/e2e-echo:local
    imagePullPolicy: Never
    command: [sh, -c]
    args:
    - |
      test -s /var/run/secrets/kubernetes.io/serviceaccount/token || { echo no token; exit 1; }
      e2e-echo connect $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT 5 && echo api-client-ok
YAML
k -n "$NS" wait pod/api-client --for=jsonpath='{.status.phase}'=Succeeded --timeout=90s >/dev/null ||
  fail "pod api-client did not succeed: $(k -n "$NS" logs api-client 2>&1 | tail -3)"
logs=$(k -n "$NS" logs api-client 2>&1)
grep -q api-client-ok <<< "$logs" || fail "kubectl logs api-client: $logs"
ok "pod with a service-account token reached the API; kubectl logs works"

# 9. on every node, a claim of the default StorageClass (local-volumes) is provisioned on that
#    node, bound, and written by a non-root pod through its fsGroup (what Pod Security
#    `restricted` pods rely on)
for n in $(node_names); do
  sed "s/NODE/$n/g" <<'YAML' | k -n "$NS" apply -f - >/dev/null
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data-NODE}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer-NODE}
spec:
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: NODE}
  securityContext: {runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, runAsNonRoot: true}
  containers:
  - name: c
    image: localhost/e2e-echo:local
    imagePullPolicy: Never
    command: [sh, -c, 'echo written > /data/f && cat /data/f']
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data-NODE}}]
YAML
done
for n in $(node_names); do
  k -n "$NS" wait "pod/writer-$n" --for=jsonpath='{.status.phase}'=Succeeded --timeout=90s >/dev/null ||
    fail "a non-root pod on $n could not write its claim: $(k -n "$NS" logs "writer-$n" 2>&1 | tail -3; k -n "$NS" describe pvc "data-$n" | tail -5)"
  pv=$(k -n "$NS" get pvc "data-$n" -o jsonpath='{.spec.volumeName}')
  node=$(k get pv "$pv" -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}')
  [ "$node" = "$n" ] || fail "volume $pv of a pod on $n has node affinity to '$node'"
  [ -f "$E2E/volumes/$n/$pv/f" ] || fail "volume $pv's data is not under .e2e/volumes/$n/"
  ok "claim on $n bound to local volume $pv (data in .e2e/volumes/$n/), written by uid 65532 through fsGroup"
done

# 10. the object store (objectstore.sh): with its credentials from the host, an object put, read,
#     listed and deleted; unsigned and wrongly signed requests refused; pods on the other nodes
#     read the object over HTTP at the pod endpoint (a presigned URL), are refused unsigned, and
#     cannot connect to weed's S3 gRPC port
OS=$CLUSTER_DIR/objectstore.sh
is_running objectstore "$BIN/weed" || fail "the object store is not running ('make cluster' or 'make object-store')"
s3ep=$("$OS" endpoint)
key=cluster-check/obj-$(date +%s)-$$
body="cluster-check object $(date -Is)"
out=$("$OS" curl "$S3_BUCKET/$key" -f -X PUT -H 'Content-Type: text/plain' --data-binary "$body" 2>&1) || fail "S3 PUT $S3_BUCKET/$key: $out"
out=$("$OS" curl "$S3_BUCKET/$key" -f 2>&1) && [ "$out" = "$body" ] || fail "S3 GET $S3_BUCKET/$key returned '$out', want '$body'"
out=$("$OS" curl "$S3_BUCKET?list-type=2&prefix=cluster-check%2F" -f 2>&1) || fail "S3 ListObjectsV2: $out"
grep -q "<Key>$key</Key>" <<< "$out" || fail "S3 ListObjectsV2 of $S3_BUCKET does not list $key: $out"
ok "object store: PUT, GET, ListObjectsV2 of $S3_BUCKET/$key with the cluster's credentials"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/$S3_BUCKET/$key")
[ "$code" = 403 ] || fail "object store: anonymous GET got HTTP $code, want 403"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary x "http://127.0.0.1:$S3_PORT/$S3_BUCKET/$key-anon")
[ "$code" = 403 ] || fail "object store: anonymous PUT got HTTP $code, want 403"
code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$(eval "$("$OS" env)"; echo "$AWS_ACCESS_KEY_ID"):wrong-secret" \
  "http://127.0.0.1:$S3_PORT/$S3_BUCKET/$key")
[ "$code" = 403 ] || fail "object store: a GET signed with a wrong secret got HTTP $code, want 403"
ok "object store: anonymous GET and PUT, and a wrong signature, refused (403)"
# (busybox's wget dies of SIGSEGV in these pods: HTTP/1.0 by hand through busybox nc, whose
# stdin stays open a moment: at its end nc may quit before the response arrived)
http_from_pod() {  # POD PATH?QUERY: the status line, headers and body of a GET at the pod endpoint
  local hp=${s3ep#http://}
  k -n "$NS" exec "$1" -- sh -c '{ printf "GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n" "$1" "$2" "$3"; sleep 1; } | nc -w 5 "$2" "$3"' _ \
    "$2" "${hp%:*}" "${hp##*:}" 2>&1 | tr -d '\r' || true
}
for target in $(k -n "$NS" get pod -l app=echo -o jsonpath='{range .items[*]}{.metadata.name},{.spec.nodeName}{"\n"}{end}'); do
  IFS=, read -r tname tnode <<< "$target"
  [ "$tnode" = node-1 ] && [ "$NODES" -gt 1 ] && continue
  url=$("$OS" presign "$S3_BUCKET/$key" 120)
  out=$(http_from_pod "$tname" "${url#"$s3ep"}")
  head -1 <<< "$out" | grep -q '^HTTP/1\.[01] 200' && [ "$(tail -1 <<< "$out")" = "$body" ] ||
    fail "pod $tname on $tnode cannot read $S3_BUCKET/$key at $s3ep (presigned GET): $out"
  out=$(http_from_pod "$tname" "/$S3_BUCKET/$key")
  head -1 <<< "$out" | grep -q '^HTTP/1\.[01] 403' || fail "pod $tname on $tnode: an unsigned GET at $s3ep got '$out', want HTTP 403"
  # weed's S3 gRPC port (an unauthenticated IAM API) is closed to pods (up.sh: chain TFS-E2E-OBJSTORE)
  hp=${s3ep#http://}
  out=$(k -n "$NS" exec "$tname" -- e2e-echo connect "${hp%:*}" $(( S3_PORT + 10000 )) 3 2>&1) &&
    fail "pod $tname on $tnode could connect to weed's S3 gRPC port $(( S3_PORT + 10000 )): $out"
  ok "object store from pod $tname on $tnode: presigned GET at $s3ep returns the object; unsigned GET refused (403); gRPC port closed"
done
out=$("$OS" curl "$S3_BUCKET/$key" -f -X DELETE 2>&1) || fail "S3 DELETE $S3_BUCKET/$key: $out"
code=$("$OS" curl "$S3_BUCKET/$key" -o /dev/null -w '%{http_code}')
[ "$code" = 404 ] || fail "object store: GET after DELETE got HTTP $code, want 404"
ok "object store: DELETE $S3_BUCKET/$key, then GET is 404"

# 11. the cluster's resident memory: every process of it (control plane, kubelets, containerds,
#     kube-proxy, the volume provisioner, the object store, shims, and the pods this check left running)
rss=0
for f in "$PIDS"/*.pid; do
  p=$(cat "$f"); [ -r "/proc/$p/status" ] && rss=$(( rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status") ))
done
pods_kb=0
for p in $(cluster_shims) $(find "$FREEZER"/tfs-node-*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null); do
  [ -r "/proc/$p/status" ] && pods_kb=$(( pods_kb + $(awk '/^VmRSS:/ {print $2; f=1} END {if (!f) print 0}' "/proc/$p/status") ))
done
# (weed's RSS is mostly pages of its 160 MB binary; its anonymous memory is the real cost)
read -r weed_kb weed_anon <<< "$(awk '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} END {print r+0, a+0}' "/proc/$(pid_of objectstore)/status" 2>/dev/null || echo 0 0)"
ok "resident memory: components $(( rss / 1024 )) MiB (of which the object store $(( weed_kb / 1024 )) MiB, $(( weed_anon / 1024 )) MiB anonymous), shims and pods $(( pods_kb / 1024 )) MiB, total $(( (rss + pods_kb) / 1024 )) MiB"

echo "$PASSED passed, 0 failed"
