#!/usr/bin/env bash
# Builds container images with buildah from scratch (no base image can be pulled here), saves
# them as docker-archives under $E2E/images/ and imports them into containerd's k8s.io
# namespace when the cluster's containerd is running (otherwise `make cluster` imports them).
# Usage: image.sh pause|echo|tfs|import...
#   pause  localhost/pause:local     static pause binary; the pod sandbox image
#   echo   localhost/e2e-echo:local  busybox (sh, nc, wget, ...) + e2e-echo TCP server; for checks
#   tfs    localhost/tfs:dev         the project's release binaries from target/release
#   import (re)import every archive under $E2E/images/ that containerd does not have yet
source "$(dirname "$0")/lib.sh"
IMAGES=$E2E/images
mkdir -p "$IMAGES" "$E2E/buildah"
TFS_BINARIES=(tfs-nameserver tfsctl tfs-operator)

# buildah keeps its storage under $E2E/buildah so nothing is left in /var/lib/containers.
bah() { buildah --root "$E2E/buildah/storage" --runroot "$E2E/buildah/run" --storage-driver "${BUILDAH_DRIVER:-overlay}" "$@"; }

# Every command below talks to node $NI's containerd (each node has its own image store).
NI=1
containerd_up() { is_running "containerd-node-$NI" "$E2E/config/node-$NI/containerd.toml" 2>/dev/null && [ -S "$(node_socket "$NI")" ]; }
ctr_() { ctr --address "$(node_socket "$NI")" -n k8s.io "$@"; }
crictl_() { "$BIN/crictl" --runtime-endpoint "unix://$(node_socket "$NI")" --image-endpoint "unix://$(node_socket "$NI")" "$@" 2>/dev/null; }
# image_id REF: the image's id as the CRI (kubelet) sees it, empty when absent.
# has_image REF: containerd has REF (list captured first: `grep -q` in a pipeline + pipefail
# would report a miss whenever ctr gets SIGPIPE).
has_image() { local l; l=$(ctr_ images ls -q 2>/dev/null) || return 1; grep -qx "$1" <<< "$l"; }
image_id() { [ -x "$BIN/crictl" ] && crictl_ inspecti -o go-template --template '{{.status.id}}' "$1" || true; }

# import_archive NAME: import $IMAGES/NAME.tar into the containerd of every node that runs (a
# lost node gets it from `make node-up`); the archive's sha is recorded per node so an unchanged
# image is not imported twice.
import_archive() {
  local name=$1 i
  for i in $(seq 1 "$NODES"); do
    NI=$i
    if node_is_down "$i"; then
      warn "node-$i is down: $(cat "$IMAGES/$name.ref") will be imported by 'make node-up NODE=node-$i'"
      continue
    fi
    import_into "$name"
  done
}

import_into() {
  local name=$1 tar=$IMAGES/$1.tar ref mark=$IMAGES/$1.imported.node-$NI
  ref=$(cat "$IMAGES/$name.ref")
  if ! containerd_up; then
    say "containerd of node-$NI is not running: $ref will be imported by 'make cluster'"
    return 0
  fi
  local sum; sum=$(sha256sum "$tar" | cut -c1-64)
  if [ "$(cat "$mark" 2>/dev/null)" = "$sum" ] && has_image "$ref"; then
    return 0
  fi
  local old new
  old=$(image_id "$ref")
  ctr_ images import "$tar" >/dev/null 2>"$LOGS/import-$name.log" ||
    die "import of $tar into node-$NI failed: $(cat "$LOGS/import-$name.log")"
  has_image "$ref" || die "$ref not found in the containerd of node-$NI after import of $tar"
  new=$(image_id "$ref")
  # The replaced image stays as an untagged image (the kubelet's image GC is off): remove it
  # unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    crictl_ rmi "$old" >/dev/null 2>&1 || true
  fi
  echo "$sum" > "$mark"
  say "imported $ref into node-$NI's containerd (k8s.io)"
}

# build_image NAME REF ROOTFS_DIR ENTRYPOINT_JSON CMD_JSON [ENV...]
build_image() {
  local name=$1 ref=$2 dir=$3 ep=$4 cmd=$5; shift 5
  local c args=()
  for e in "$@"; do args+=(--env "$e"); done
  c=$(bah from --quiet scratch)
  trap 'bah rm "$c" >/dev/null 2>&1 || true' RETURN
  bah copy --quiet "$c" "$dir/" / >/dev/null
  bah config --entrypoint "$ep" --cmd "$cmd" --workingdir / \
    --label org.opencontainers.image.title="$name" "${args[@]}" "$c"
  bah commit --quiet --rm "$c" "$ref" >/dev/null
  trap - RETURN
  rm -f "$IMAGES/$name.tar"
  bah push --quiet "$ref" "docker-archive:$IMAGES/$name.tar:$ref" >/dev/null
  echo "$ref" > "$IMAGES/$name.ref"
  say "built image $ref ($(du -h "$IMAGES/$name.tar" | cut -f1))"
  import_archive "$name"
}

# stage_busybox DIR: /bin/busybox plus links for the applets the checks and `kubectl exec` use.
stage_busybox() {
  local d=$1 bb=/bin/busybox
  [ -x "$bb" ] && ! ldd "$bb" >/dev/null 2>&1 || die "static busybox missing: run 'make deps-cluster' (busybox-static)"
  mkdir -p "$d/bin"
  cp "$bb" "$d/bin/busybox"
  for a in sh ash cat echo env hostname id kill ls mkdir nc ps pkill pgrep rm sleep tail top wget \
           ip ifconfig netstat nslookup grep sed awk head date du df free mount uname true false; do
    ln -sf busybox "$d/bin/$a"
  done
}

# fresh NAME INPUT...: the archive of NAME exists and is newer than every INPUT (and FORCE unset).
fresh() {
  local tar=$IMAGES/$1.tar f; shift
  [ "${FORCE:-0}" != 1 ] && [ -s "$tar" ] && [ -s "${tar%.tar}.ref" ] || return 1
  for f in "$@"; do [ "$tar" -nt "$f" ] || return 1; done
}

image_pause() {
  "$CLUSTER_DIR/build.sh" pause
  if fresh pause "$BIN/pause"; then import_archive pause; return 0; fi
  local d; d=$(mktemp -d); trap 'rm -rf "$d"' RETURN
  cp "$BIN/pause" "$d/pause"
  build_image pause localhost/pause:local "$d" '["/pause"]' '[]'
}

image_echo() {
  "$CLUSTER_DIR/build.sh" echo
  if fresh e2e-echo "$BIN/e2e-echo" /bin/busybox; then import_archive e2e-echo; return 0; fi
  local d; d=$(mktemp -d); trap 'rm -rf "$d"' RETURN
  stage_busybox "$d"
  cp "$BIN/e2e-echo" "$d/bin/e2e-echo"
  build_image e2e-echo localhost/e2e-echo:local "$d" '["/bin/e2e-echo"]' '["serve","8080"]' PATH=/bin
}

# The project's image: release binaries, the shared libraries they load (per ldd) and the dynamic
# loader, plus a static busybox so `kubectl exec` has sh/kill/ps. Entrypoint: tfs-operator when
# present; pods set `command:` for the nameserver.
image_tfs() {
  local rel=$ROOT/target/release d found=() b lib
  d=$(mktemp -d); trap 'rm -rf "$d"' RETURN
  mkdir -p "$d/usr/local/bin" "$d/tmp" "$d/etc"
  chmod 1777 "$d/tmp"
  for b in "${TFS_BINARIES[@]}"; do
    [ -x "$rel/$b" ] && { cp "$rel/$b" "$d/usr/local/bin/"; found+=("$b"); }
  done
  if [ ${#found[@]} -eq 0 ]; then
    warn "no release binaries in $rel (${TFS_BINARIES[*]}): run 'cargo build --release'; packaging pause as a placeholder"
    "$CLUSTER_DIR/build.sh" pause
    cp "$BIN/pause" "$d/usr/local/bin/pause"
    found=(pause)
  fi
  # Shared libraries (and the loader, which ldd lists by absolute path) of every binary.
  for b in "${found[@]}"; do
    ldd "$d/usr/local/bin/$b" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
      [ -e "$lib" ] || continue
      mkdir -p "$d$(dirname "$lib")"
      cp -L "$lib" "$d$lib"
    done
  done
  # The loader is looked up by its ABI path (/lib64/ld-linux-x86-64.so.2), a symlink on Debian.
  if [ -e /lib64/ld-linux-x86-64.so.2 ] && [ -d "$d/lib/x86_64-linux-gnu" ] && [ ! -e "$d/lib64/ld-linux-x86-64.so.2" ]; then
    mkdir -p "$d/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$d/lib64/"
  fi
  stage_busybox "$d"
  # The public CA roots (Debian's ca-certificates): the archive's S3 client verifies https
  # endpoints against them, and its HTTP client cannot be built on a system that has none.
  [ -s /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt missing: apt-get install ca-certificates"
  mkdir -p "$d/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$d/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$d/etc/group"
  local ep='[]'
  [ -e "$d/usr/local/bin/tfs-operator" ] && ep='["/usr/local/bin/tfs-operator"]'
  build_image tfs localhost/tfs:dev "$d" "$ep" '[]' PATH=/usr/local/bin:/bin
  say "localhost/tfs:dev holds: ${found[*]}"
}

command -v buildah >/dev/null || die "buildah missing: run 'make deps-cluster'"
[ $# -gt 0 ] || set -- tfs
for what in "$@"; do
  case $what in
    pause) image_pause ;;
    echo) image_echo ;;
    tfs) image_tfs ;;
    import) for f in "$IMAGES"/*.tar; do [ -e "$f" ] && import_archive "$(basename "$f" .tar)"; done; true ;;
    *) die "unknown image $what (pause|echo|tfs|import)" ;;
  esac
done
