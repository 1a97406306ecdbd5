#!/usr/bin/env bash
# The cluster's S3-compatible object store: SeaweedFS (`weed server -filer -s3`, one host process
# started by up.sh, stopped by down.sh; data, config and credentials in .e2e/objectstore/).
# Usage: objectstore.sh COMMAND
#   endpoint             the S3 endpoint pods use (http://10.244.0.1:8333, path-style)
#   env                  export lines for host-side tools: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                        AWS_REGION, TFS_S3_ENDPOINT (http://127.0.0.1:8333)
#   secret NS NAME       create or update Secret NS/NAME with keys accessKeyId, secretAccessKey
#   bucket NAME          create bucket NAME (idempotent)
#   status               process, memory, endpoint, buckets
#   curl PATH [ARGS...]  a SigV4-signed curl of http://127.0.0.1:8333/PATH (e.g. `curl tfs-backups/k -T f`)
#   presign PATH [SECS]  a presigned GET URL of PATH on the pod endpoint (default 300 s)
#   config               (up.sh) the credentials (generated once) and configuration files
#   stop                 (down.sh, up.sh) stop the store
source "$(dirname "$0")/lib.sh"

CREDS=$OBJSTORE/credentials        # ACCESS_KEY=... SECRET_KEY=... (0600)
S3_JSON=$OBJSTORE/s3.json          # weed's -s3.config: the identity and its actions (0600)
HOST_ENDPOINT=http://127.0.0.1:$S3_PORT
POD_HOSTPORT=$(node_gateway 1):$S3_PORT

# config: credentials once per cluster (until `make cluster-clean`), then the files derived from them.
config() {
  mkdir -p "$OBJSTORE/data" "$OBJSTORE/config"
  chmod 0700 "$OBJSTORE"
  if [ ! -s "$CREDS" ]; then
    say "object store: generating its S3 credentials (${CREDS#$ROOT/})"
    ( umask 077
      printf 'ACCESS_KEY=TFSE2E%s\nSECRET_KEY=%s\n' "$(openssl rand -hex 7 | tr a-f A-F)" \
        "$(openssl rand -base64 30 | tr '+/' '-_')" > "$CREDS.tmp" ) && mv "$CREDS.tmp" "$CREDS"
  fi
  load_creds
  # One identity; no "anonymous" identity, so unsigned requests are refused.
  local json
  json=$(jq -n --arg ak "$AK" --arg sk "$SK" '{identities: [{name: "tfs", credentials: [{accessKey: $ak, secretKey: $sk}],
           actions: ["Read", "Write", "List", "Tagging", "Admin"]}]}')
  [ "$(cat "$S3_JSON" 2>/dev/null)" = "$json" ] || ( umask 077; echo "$json" > "$S3_JSON" )
  # master.toml (weed -config_dir): grow one volume at a time, not seven (each volume is a file
  # with an in-memory index: fewer means less memory on this small machine).
  local toml='[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1'
  [ "$(cat "$OBJSTORE/config/master.toml" 2>/dev/null)" = "$toml" ] || echo "$toml" > "$OBJSTORE/config/master.toml"
}

load_creds() {
  [ -r "$CREDS" ] || die "no object store credentials (${CREDS#$ROOT/}): run 'make cluster'"
  AK=$(sed -n 's/^ACCESS_KEY=//p' "$CREDS"); SK=$(sed -n 's/^SECRET_KEY=//p' "$CREDS")
  [ -n "$AK" ] && [ -n "$SK" ] || die "${CREDS#$ROOT/} is incomplete: remove it and run 'make cluster'"
}

# s3curl PATH [ARGS...]: curl signed with SigV4. Debian 12's curl (7.88) signs a payload of its
# own choosing when no x-amz-content-sha256 is given (a --data-binary body then fails with
# SignatureDoesNotMatch): the header, UNSIGNED-PAYLOAD, is always sent and signed.
s3curl() {
  local path=${1#/}; shift
  load_creds
  curl -sS --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$AK:$SK" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    "$@" "$HOST_ENDPOINT/$path"
}

bucket() {
  local name=$1 out code
  out=$(s3curl "$name" -X PUT -w '\n%{http_code}') || die "object store not reachable at $HOST_ENDPOINT"
  code=${out##*$'\n'}
  case $code in
    200) say "object store: bucket $name created" ;;
    409) grep -q BucketAlreadyOwnedByYou <<< "$out" || die "bucket $name: $out" ;;
    *) die "cannot create bucket $name (HTTP $code): ${out%$'\n'*}" ;;
  esac
}

hmac() { printf '%s' "$2" | openssl dgst -sha256 -mac HMAC -macopt "$1" | awk '{print $NF}'; }
# presign PATH [SECONDS]: query-string SigV4 of a GET of PATH on the pod endpoint (PATH's
# characters must need no URI encoding: letters, digits, - _ . ~ /).
presign() {
  local path=${1#/} exp=${2:-300} now day scope query creq sts k
  load_creds
  [[ "$path" =~ ^[A-Za-z0-9._~/-]+$ ]] || die "presign: PATH must be plain ([A-Za-z0-9._~/-])"
  now=$(date -u +%Y%m%dT%H%M%SZ); day=${now%%T*}
  scope=$day/$S3_REGION/s3/aws4_request
  query="X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=$AK%2F${scope//\//%2F}&X-Amz-Date=$now&X-Amz-Expires=$exp&X-Amz-SignedHeaders=host"
  creq=$(printf 'GET\n/%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD' "$path" "$query" "$POD_HOSTPORT")
  sts=$(printf 'AWS4-HMAC-SHA256\n%s\n%s\n%s' "$now" "$scope" "$(printf '%s' "$creq" | sha256sum | cut -d' ' -f1)")
  k=$(hmac "key:AWS4$SK" "$day"); k=$(hmac "hexkey:$k" "$S3_REGION"); k=$(hmac "hexkey:$k" s3)
  k=$(hmac "hexkey:$k" aws4_request)
  echo "http://$POD_HOSTPORT/$path?$query&X-Amz-Signature=$(hmac "hexkey:$k" "$sts")"
}

secret() {
  local ns=$1 name=$2
  load_creds
  kubectl --kubeconfig "$KUBECONFIG_ADMIN" -n "$ns" create secret generic "$name" \
    --from-literal=accessKeyId="$AK" --from-literal=secretAccessKey="$SK" --dry-run=client -o yaml |
    kubectl --kubeconfig "$KUBECONFIG_ADMIN" apply -f - >/dev/null || die "cannot write Secret $ns/$name"
  echo "secret $ns/$name: accessKeyId, secretAccessKey (endpoint $(endpoint))"
}

endpoint() { echo "http://$POD_HOSTPORT"; }

status() {
  local pid out
  if is_running objectstore "$BIN/weed"; then
    pid=$(pid_of objectstore)
    echo "running: pid $pid, RSS $(( $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") / 1024 )) MiB, $("$BIN/weed" version 2>/dev/null | head -1)"
  else
    echo "not running (make cluster, or make object-store)"; return 1
  fi
  echo "endpoint: $(endpoint) (pods), $HOST_ENDPOINT (host); credentials: ${CREDS#$ROOT/}; data: ${OBJSTORE#$ROOT/}/data ($(du -sh "$OBJSTORE/data" | cut -f1))"
  out=$(s3curl "" -f) || { echo "ListBuckets failed"; return 1; }
  echo "buckets: $(grep -o '<Name>[^<]*</Name>' <<< "$out" | sed 's/<[^>]*>//g' | tr '\n' ' ')"
}

# stop (down.sh, up.sh): `weed server` stops its volume server before its filer, whose last
# metadata-log flush then retries against it for 15 s; once the filer is shutting down (volumes
# closed, filer store written) nothing is left to save: SIGKILL then, not after 15 s.
stop_store() {
  local pid mark end
  pid=$(pid_of objectstore)
  [ -n "$pid" ] || return 0
  if ! is_running objectstore "$BIN/weed"; then rm -f "$PIDS/objectstore.pid" "$PIDS/objectstore.fp"; return 0; fi
  say "stopping objectstore (pid $pid)"
  mark=$(wc -l < "$LOGS/objectstore.log")
  kill -TERM "$pid" 2>/dev/null || true
  end=$(( $(date +%s) + 20 ))
  while alive objectstore && [ "$(date +%s)" -lt "$end" ]; do
    if tail -n "+$(( mark + 1 ))" "$LOGS/objectstore.log" | grep -q 'Shutting down filer'; then sleep 1; break; fi
    sleep 0.2
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  end=$(( $(date +%s) + 10 ))
  while alive objectstore && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
  rm -f "$PIDS/objectstore.pid" "$PIDS/objectstore.fp"
}

case ${1:-} in
  config) config ;;
  stop) stop_store ;;
  endpoint) endpoint ;;
  env) load_creds; echo "export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=$S3_REGION TFS_S3_ENDPOINT=$HOST_ENDPOINT" ;;
  secret) [ $# = 3 ] || die "usage: objectstore.sh secret NAMESPACE NAME"; secret "$2" "$3" ;;
  bucket) [ $# = 2 ] || die "usage: objectstore.sh bucket NAME"; bucket "$2" ;;
  status) status ;;
  curl) [ $# -ge 2 ] || die "usage: objectstore.sh curl PATH [CURL ARGS...]"; shift; s3curl "$@" ;;
  presign) [ $# -ge 2 ] || die "usage: objectstore.sh presign PATH [SECONDS]"; presign "$2" "${3:-300}" ;;
  *) sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
