#!/usr/bin/env bash
# Build the API image, bring the compose stack up and check it from outside (docs/DEPLOYMENT.md,
# "Verified run"). Run by hand on a machine with a Docker engine; not part of CI (minutes).
#
#   bash scripts/verify_containers.sh
#
# Where Docker Hub cannot be reached (`docker pull` fails), the base images are made locally: a
# Debian bookworm root file system (debootstrap, as root) imported with `docker import`, then
# Python, nginx, PostgreSQL and Prometheus from Debian's packages (deploy/debian/Dockerfile,
# deploy/compose.debian.yml). The committed defaults stay the public images.
#
# Environment: DOCKER (client, default docker), COMPOSE (default `docker compose`, else
# docker-compose), CA_BUNDLE (passed to pip as a BuildKit secret when the file exists; default
# /etc/ssl/certs/ca-certificates.crt), LOCAL_IMAGES (auto|1|0), PHOTO and PHOTO2 (JPEGs to
# predict; default: two photos of ../shared/data/cetaceans or $WHALES_DATA_DIR), NO_CACHE=1 builds
# the API image from scratch (its build time), KEEP=1 leaves the stack and its volumes up.
# Ports 8000, 8080 and 9090 are published on 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DOCKER=${DOCKER:-docker}
if [ -z "${COMPOSE:-}" ]; then
  if $DOCKER compose version >/dev/null 2>&1; then COMPOSE="$DOCKER compose"; else COMPOSE=docker-compose; fi
fi
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
LOCAL_IMAGES=${LOCAL_IMAGES:-auto}
PROJECT=whales-verify
API_IMAGE=ecomarineai/api:latest
KEY=verify-$RANDOM$RANDOM
IND=verify_whale_$(date +%s)
WORK=$(mktemp -d /tmp/whales-verify.XXXXXX)
API=http://127.0.0.1:8000
WEB=http://127.0.0.1:8080
PROM=http://127.0.0.1:9090
export WHALES_PUBLISH_ADDR=127.0.0.1 WEB_CONCURRENCY=2 WHALES_API_KEYS=$KEY DOCKER_BUILDKIT=1

failures=0
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
check() {  # check NAME OK(0/1) DETAIL
  if [ "$2" = 0 ]; then log "PASS  $1: $3"; else log "FAIL  $1: $3"; failures=$((failures + 1)); fi
}
die() { log "ABORT $*"; exit 2; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
wait_for() {  # wait_for SECONDS URL [STATUS]: polls until URL answers STATUS (200)
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$1" ]; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$2")" = "${3:-200}" ] && return 0
    sleep 1
  done
  return 1
}

all_ready() {  # /ready answered 200 on 8 new connections in a row: every worker has loaded
  local t0=$SECONDS n=0
  while [ $((SECONDS - t0)) -lt 240 ] && [ "$n" -lt 8 ]; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/ready")" = 200 ]; then n=$((n + 1)); else n=0; sleep 1; fi
  done
  [ "$n" -ge 8 ]
}

# --- images ---------------------------------------------------------------------------------
$DOCKER info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info); start dockerd"
if [ "$LOCAL_IMAGES" = auto ]; then
  if $DOCKER pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then LOCAL_IMAGES=0; else LOCAL_IMAGES=1; fi
fi
compose_files=(-f docker-compose.yml)
build_args=()
if [ "$LOCAL_IMAGES" = 1 ]; then
  log "Docker Hub out of reach: base images from Debian's packages"
  if ! $DOCKER image inspect whales-local/debian:bookworm >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || die "debootstrap is needed (apt-get install debootstrap)"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" \
      http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed: $WORK/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | $DOCKER import - whales-local/debian:bookworm >/dev/null || die "docker import failed"
    rm -rf "$rootfs"
  fi
  for target in python nginx postgres prometheus; do
    $DOCKER build -q --build-arg BASE=whales-local/debian:bookworm --target "$target" \
      -t "whales-local/$target:bookworm" deploy/debian >"$WORK/build-$target.log" 2>&1 \
      || die "building whales-local/$target failed: $WORK/build-$target.log"
  done
  build_args+=(--build-arg PYTHON_IMAGE=whales-local/python:bookworm)
  compose_files+=(-f deploy/compose.debian.yml)
fi
[ -s "$CA_BUNDLE" ] && build_args+=(--secret "id=ca_bundle,src=$CA_BUNDLE")
[ "${NO_CACHE:-0}" = 1 ] && build_args+=(--no-cache)
log "building $API_IMAGE"
t0=$SECONDS
$DOCKER build "${build_args[@]}" -t "$API_IMAGE" . >"$WORK/build-api.log" 2>&1 \
  || { tail -30 "$WORK/build-api.log"; die "the API image did not build"; }
size_mb=$(( $($DOCKER image inspect -f '{{.Size}}' "$API_IMAGE") / 1000000 ))
check "image build" 0 "$API_IMAGE built in $((SECONDS - t0)) s, size $size_mb MB"
torch=$($DOCKER run --rm --entrypoint python "$API_IMAGE" -c \
  "import importlib.util as u; print(u.find_spec('torch') is not None)")
check "no torch in the image" "$([ "$torch" = False ] && echo 0 || echo 1)" "torch installed: $torch"

# --- the stack --------------------------------------------------------------------------------
dc() { $COMPOSE -p "$PROJECT" "${compose_files[@]}" "$@"; }
dc down -v --remove-orphans >/dev/null 2>&1
trap '[ "${KEEP:-0}" = 1 ] || dc down -v --remove-orphans >/dev/null 2>&1; rm -rf "$WORK"' EXIT
t0=$SECONDS
dc up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; die "compose up failed"; }
wait_for 240 "$API/ready" || { dc logs --tail 50 api; die "the API did not become ready"; }
first_s=$((SECONDS - t0))
all_ready
check "/ready on the API" $? "200 after $first_s s, from every worker after $((SECONDS - t0)) s (compose up to ready, PostgreSQL healthcheck included)"
cid=$(dc ps -q api)
procs=$($DOCKER top "$cid" -o pid,rss,args)
rss=$(awk 'NR > 1 {n++; s += $2; w = w sprintf(" %.0f", $2 / 1024)} END {printf "%d processes, %.0f MB RSS in all (each, MB:%s)", n, s / 1024, w}' <<<"$procs")
workers=$(grep -c 'multiprocessing.spawn' <<<"$procs")
mem=$($DOCKER stats --no-stream --format '{{.MemUsage}}' "$cid")
check "container RSS at ready" 0 "$rss (cgroup: $mem)"
check "two API workers" "$([ "$workers" = 2 ] && echo 0 || echo 1)" "$workers uvicorn worker processes (WEB_CONCURRENCY=2)"

# --- through nginx ----------------------------------------------------------------------------
DATA=${WHALES_DATA_DIR:-$ROOT/../shared/data/cetaceans}
PHOTO=${PHOTO:-$(ls "$DATA"/positives/happywhale/*.jpg 2>/dev/null | head -1)}
PHOTO2=${PHOTO2:-$(ls "$DATA"/positives/happywhale/*.jpg 2>/dev/null | sed -n 2p)}
[ -f "$PHOTO" ] && [ -f "$PHOTO2" ] || die "no photos: set PHOTO and PHOTO2 (or WHALES_DATA_DIR)"
page=$(curl -s -w '\n%{http_code}' "$WEB/")
code=$(tail -1 <<<"$page"); title=$(grep -o '<title>[^<]*' <<<"$page" | head -1)
check "page via nginx" "$([ "$code" = 200 ] && [ -n "$title" ] && echo 0 || echo 1)" "GET $WEB/ -> $code, ${title#<title>}"
js=$(curl -s -o /dev/null -w '%{http_code}' "$WEB/app.js")
check "page script via nginx" "$([ "$js" = 200 ] && echo 0 || echo 1)" "GET $WEB/app.js -> $js"
out=$(curl -s -w '\n%{http_code}' -F "file=@$PHOTO" "$WEB/v1/predict")
code=$(tail -1 <<<"$out")
detail=$(head -n -1 <<<"$out" | json "d.get('is_cetacean'), d.get('individual_id'), round(d.get('cetacean_score') or 0, 3)" 2>/dev/null)
check "/v1/predict via nginx" "$([ "$code" = 200 ] && echo 0 || echo 1)" "$code; is_cetacean, individual, score: $detail"
python3 - "$WORK/batch.zip" "$PHOTO" "$PHOTO2" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for i, path in enumerate(sys.argv[2:]):
        z.write(path, f"photo_{i}.jpg")
EOF
out=$(curl -s -w '\n%{http_code}' -F "archive=@$WORK/batch.zip" "$WEB/v1/predict-batch")
code=$(tail -1 <<<"$out")
n=$(head -n -1 <<<"$out" | json "len(d['results'])" 2>/dev/null)
check "/v1/predict-batch via nginx" "$([ "$code" = 200 ] && [ "$n" = 2 ] && echo 0 || echo 1)" "$code, $n results for 2 photos"

# --- Prometheus -------------------------------------------------------------------------------
q='count by (job) ({__name__=~"whales_.+", job="whales-api"})'
n=""
for _ in $(seq 60); do
  n=$(curl -s -G "$PROM/api/v1/query" --data-urlencode "query=$q" | json "d['data']['result'][0]['value'][1] if d['data']['result'] else ''" 2>/dev/null)
  [ -n "$n" ] && break
  sleep 2
done
up=$(curl -s -G "$PROM/api/v1/query" --data-urlencode 'query=up{job="whales-api"}' | json "[r['value'][1] for r in d['data']['result']]" 2>/dev/null)
check "Prometheus scraped whales_* metrics" "$([ -n "$n" ] && [ "$n" -gt 0 ] && echo 0 || echo 1)" "$n whales_* series of job whales-api; up: $up"

# --- the catalog: enrol, two workers, restart, down/up ----------------------------------------
out=$(curl -s -w '\n%{http_code}' -H "X-API-Key: $KEY" -F "files=@$PHOTO" -F species=humpback_whale \
  "$WEB/v1/individuals/$IND/images")
code=$(tail -1 <<<"$out")
check "enrolment via nginx" "$([ "$code" = 200 ] && echo 0 || echo 1)" "$code: $(head -n -1 <<<"$out" | head -c 200)"

known_by_worker() {  # "pid:count ..." of predictions answered `known`, read from each worker's metrics file
  $DOCKER exec -i "$(dc ps -q api)" python - <<'EOF'
import glob, json, os, re
from prometheus_client.mmap_dict import MmapedDict
out = []
for path in sorted(glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "counter_*.db"))):
    n = sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(path)
            if json.loads(key)[1] == "whales_predictions_total" and json.loads(key)[2].get("outcome") == "known")
    pid = re.search(r"_(\d+)\.db$", path).group(1)
    out.append(f"{pid}:{n:g}")
print(" ".join(out))
EOF
}
matches() {  # matches N: predicts PHOTO N times, 4 at a time on new connections; prints how many named IND
  local i hits=0
  for i in $(seq "$1"); do
    curl -s -F "file=@$PHOTO" "$WEB/v1/predict" -o "$WORK/p$i.json" -w '%{http_code}' >"$WORK/p$i.code" &
    [ $((i % 4)) = 0 ] && wait
  done
  wait
  for i in $(seq "$1"); do
    if [ "$(json "d.get('individual_id')" <"$WORK/p$i.json" 2>/dev/null)" = "$IND" ]; then
      hits=$((hits + 1))
    else
      log "      answer $i: HTTP $(cat "$WORK/p$i.code") $(head -c 200 "$WORK/p$i.json")" >&2
    fi
  done
  echo "$hits"
}

# both workers must answer with the new individual: the one that did not enrol reloads the shared
# catalog when it sees the database's catalog generation move (WHALES_CATALOG_REFRESH_S)
sleep 1
hits=0; total=0; seen=""
for round in 1 2 3 4 5; do
  hits=$((hits + $(matches 8))); total=$((total + 8))
  seen=$(known_by_worker)
  [ "$(tr ' ' '\n' <<<"$seen" | grep -cv ':0$')" -ge 2 ] && break
done
both=$(tr ' ' '\n' <<<"$seen" | grep -cv ':0$')
check "two workers share the catalog" "$([ "$hits" = "$total" ] && [ "$both" -ge 2 ] && echo 0 || echo 1)" \
  "$hits/$total predictions named $IND; known answers per worker pid: $seen"

dc restart api >/dev/null 2>&1
all_ready
ind=$(curl -s -o /dev/null -w '%{http_code}' "$WEB/v1/individuals/$IND")
hits=$(matches 4)
check "enrolment survives 'restart api'" "$([ "$ind" = 200 ] && [ "$hits" = 4 ] && echo 0 || echo 1)" \
  "GET /v1/individuals/$IND -> $ind; $hits/4 predictions named it"

dc down >/dev/null 2>&1
dc up -d --no-build >/dev/null 2>&1
all_ready && wait_for 60 "$WEB/"
ind=$(curl -s -o /dev/null -w '%{http_code}' "$WEB/v1/individuals/$IND")
hits=$(matches 4)
check "enrolment survives 'down' + 'up' (volumes kept)" "$([ "$ind" = 200 ] && [ "$hits" = 4 ] && echo 0 || echo 1)" \
  "GET /v1/individuals/$IND -> $ind; $hits/4 predictions named it"

log "done: $failures check(s) failed"
[ "$failures" = 0 ]
