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

# 1. node Ready
st=$(k get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>&1) || fail "cannot get node $NODE_NAME: $st"
[ "$st" = True ] || fail "node $NODE_NAME is not Ready ($st)"
ok "node $NODE_NAME Ready"

# 2. server version
sv=$(k version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)
case $sv in v1.36.*) ok "server version $sv" ;; *) fail "server version is '$sv', want v1.36.x" ;; esac
kv=$(k get node "$NODE_NAME" -o jsonpath='{.status.nodeInfo.kubeletVersion}')
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
k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 2
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
ok "Deployment echo Available (2 replicas)"

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

# 9. a claim of the default StorageClass (local-volumes) is provisioned on the node, bound, and
#    written by a non-root pod through its fsGroup (what Pod Security `restricted` pods rely on)
k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, runAsNonRoot: true}
  containers:
  - name: c
    image: localhost/e2e-echo:local
    imagePullPolicy: Never
    command: [sh, -c, 'echo written > /data/f && cat /data/f']
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
YAML
k -n "$NS" wait pod/writer --for=jsonpath='{.status.phase}'=Succeeded --timeout=90s >/dev/null ||
  fail "a non-root pod could not write its claim: $(k -n "$NS" logs writer 2>&1 | tail -3; k -n "$NS" describe pvc data | tail -5)"
pv=$(k -n "$NS" get pvc data -o jsonpath='{.spec.volumeName}')
node=$(k get pv "$pv" -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}')
[ "$node" = "$NODE_NAME" ] || fail "volume $pv has node affinity to '$node', want $NODE_NAME"
ok "claim bound to local volume $pv on node $node, written by uid 65532 through fsGroup"

echo "$PASSED passed, 0 failed"
