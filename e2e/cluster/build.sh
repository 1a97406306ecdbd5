#!/usr/bin/env bash
# Builds the cluster's binaries into $E2E/bin, only those that are missing (FORCE=1 rebuilds).
# Usage: build.sh [kube|etcd|helm|crictl|weed|pause|echo|all]...   (default: all)
# Go caches stay at their defaults (~/.cache/go-build, ~/go/pkg/mod) and are reused across runs.
source "$(dirname "$0")/lib.sh"
mkdir -p "$BIN" "$LOGS"
FORCE=${FORCE:-0}

need() { [ "$FORCE" = 1 ] || [ ! -x "$BIN/$1" ]; }

# go_build MODULE_DIR OUTPUT PACKAGE LDFLAGS...
go_build() {
  local dir=$1 out=$2 pkg=$3 ldflags=$4 t
  t=$(date +%s)
  say "building $out ($pkg) ... log: $LOGS/build-$out.log"
  if ! (cd "$CLUSTER_DIR/$dir" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -tags selinux,notest,grpcnotrace \
        -ldflags "-s -w $ldflags" -o "$BIN/$out.tmp" "$pkg") >"$LOGS/build-$out.log" 2>&1; then
    tail -30 "$LOGS/build-$out.log" >&2
    die "build of $out failed (see $LOGS/build-$out.log)"
  fi
  mv "$BIN/$out.tmp" "$BIN/$out"
  say "built $out in $(( $(date +%s) - t ))s"
  echo "$out $(( $(date +%s) - t ))s $(date -Is)" >> "$LOGS/build-times.log"
}

build_kube() {
  local bd ld v=$K8S_VERSION minor
  minor=${v#v1.}; minor=${minor%%.*}
  # Build date = the release's commit time, so rebuilds are reproducible.
  bd=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.info" 2>/dev/null || true)
  [ -n "$bd" ] || bd=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$bd"
  done
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    need "$c" && go_build kube "$c" "k8s.io/kubernetes/cmd/$c" "$ld"
  done
  return 0
}

build_etcd() {
  local ld="-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
  need etcd && go_build etcd etcd go.etcd.io/etcd/server/v3 "$ld"
  need etcdctl && go_build etcd etcdctl go.etcd.io/etcd/etcdctl/v3 "$ld"
  # etcd's benchmark tool (optional: only for comparisons in benchmarks).
  if need etcd-benchmark; then
    (go_build etcd etcd-benchmark go.etcd.io/etcd/v3/tools/benchmark "") || warn "etcd-benchmark did not build (optional)"
  fi
  return 0
}

build_helm() {
  need helm && go_build helm helm helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  return 0
}

build_crictl() {
  need crictl && go_build crictl crictl sigs.k8s.io/cri-tools/cmd/crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  return 0
}

# SeaweedFS's weed (the object store, see objectstore.sh): also rebuilt when the pin in
# seaweedfs/go.mod changed since it was built (recorded in $BIN/weed.version).
build_weed() {
  local v
  v=$(sed -n 's|^require github.com/seaweedfs/seaweedfs \(v[^ ]*\)$|\1|p; s|^\tgithub.com/seaweedfs/seaweedfs \(v[^ ]*\)$|\1|p' "$CLUSTER_DIR/seaweedfs/go.mod")
  [ "$v" = "$SEAWEEDFS_VERSION" ] || die "seaweedfs/go.mod pins '$v', lib.sh says SEAWEEDFS_VERSION=$SEAWEEDFS_VERSION"
  if need weed || [ "$(cat "$BIN/weed.version" 2>/dev/null)" != "$v" ]; then
    go_build seaweedfs weed github.com/seaweedfs/seaweedfs/weed \
      "-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${v##*-}"
    echo "$v" > "$BIN/weed.version"
  fi
  return 0
}

# Static C programs (pause container, TCP echo test server).
build_c() {
  local name=$1 src=$2
  need "$name" || return 0
  command -v gcc >/dev/null || die "gcc missing: run 'make deps-cluster'"
  say "building $name (static C)"
  gcc -static -O2 -Wall -s -o "$BIN/$name" "$CLUSTER_DIR/$src" || die "gcc failed for $src (is libc6-dev installed?)"
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(all)
for t in "${targets[@]}"; do
  case $t in
    kube) build_kube ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    crictl) build_crictl ;;
    weed) build_weed ;;
    pause) build_c pause images/pause.c ;;
    echo) build_c e2e-echo images/echo.c ;;
    all) build_c pause images/pause.c; build_c e2e-echo images/echo.c; build_etcd; build_kube; build_crictl; build_helm; build_weed ;;
    *) die "unknown build target $t" ;;
  esac
done
