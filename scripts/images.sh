#!/usr/bin/env bash
# Build the pipeline's container images from nothing (docker/Dockerfile.*), print each image's
# size and build time, and check that no pip configuration or certificate of the builder is
# left in any of them.
#
#   scripts/images.sh                  # base (if needed), cpu, triton, gpu, smoke, check
#   scripts/images.sh cpu triton       # just these (the base is built first when missing)
#   scripts/images.sh smoke            # run them: damo --help, damo data synth, Triton health
#   scripts/images.sh check            # leftovers check of the images already built
#   scripts/images.sh check=IMAGE      # the same check of any image
#   scripts/images.sh build=FILE:TAG   # build another Dockerfile the same way (context: repo)
#   DAMO_COLD=1 scripts/images.sh cpu  # drop the images and the build cache first (cold timing)
#
# Tags: DAMO_IMAGE, DAMO_GPU_IMAGE and DAMO_TRITON_IMAGE of components/_image.py (the one place
# they are defined; tests/manifests checks manifests/base/triton.yaml against it).
#
# Docker: $DOCKER_HOST if set, else the private daemon of scripts/dockerd.sh (started here if
# it is not running, and stopped again at the end in that case). Builds use BuildKit
# (DOCKER_BUILDKIT=1 with docker.io's 20.10 client; no buildx needed) and --network host.
#
# Base image (build argument PYTHON_IMAGE): $DAMO_PYTHON_IMAGE if set; else the Dockerfiles'
# official python image if it is present or can be pulled; else damo-base:bookworm, a Debian
# bookworm minbase (debootstrap) with Python 3.11, imported into the daemon (built once, kept).
#
# pip: the builder's own configuration (`pip config list`: indexes, find-links, certificate,
# constraints) reaches the downloading RUNs as BuildKit secrets only: local directories and
# file:// indexes are served read-only on 127.0.0.1 for the duration of the build, the
# certificate bundle and constraint files are secret files. Nothing of it is written to a layer,
# a build argument or the image's configuration (`check` verifies this).
#
# Failures in one line (scripts/build_checks.py): a COPY of a path missing from the build
# context names the image and the path; after each build, every module the image's components
# (or, for Triton, its Python models) import is imported inside it, and one it lacks is named
# with the image and the component.
#
# Settings (environment): DAMO_PYTHON_IMAGE, DAMO_REBUILD_BASE=1, DAMO_COLD=1,
# DAMO_TORCH_INDEX (auto: PyTorch's index when reachable, else none = torch from the pip
# configuration), DAMO_GPU_FULL (auto: 1 when PyTorch's CUDA index and pypi.nvidia.com are
# reachable), DAMO_DOCKER_DATA (see scripts/dockerd.sh), DAMO_DEBIAN_MIRROR.
# Needs root and Debian's docker.io and debootstrap packages:
#   apt-get install -y --no-install-recommends docker.io debootstrap
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=/usr/bin/docker   # docker.io's client: its built-in BuildKit needs no buildx plugin
export DOCKER_BUILDKIT=1
DATA=${DAMO_DOCKER_DATA:-/var/tmp/damo-docker/data}
STATE=$(dirname "$DATA")
LOGS=$STATE/logs
LOCAL_BASE=damo-base:bookworm
MIRROR=${DAMO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,libpython3.11,ca-certificates

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%01d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# --- tags (one definition: components/_image.py) ------------------------------------------
read_tag() {
  python3 - "$1" <<'EOF'
import ast, sys
tree = ast.parse(open("components/_image.py").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == sys.argv[1]
                                            for t in node.targets):
        print(ast.literal_eval(node.value)); break
else:
    sys.exit(f"components/_image.py defines no {sys.argv[1]}")
EOF
}
CPU_TAG=$(read_tag DAMO_IMAGE)
GPU_TAG=$(read_tag DAMO_GPU_IMAGE)
TRITON_TAG=$(read_tag DAMO_TRITON_IMAGE)

# --- docker daemon --------------------------------------------------------------------------
STARTED_DAEMON=0
HTTP_PID=
WORK=
cleanup() {
  local rc=$?
  if [[ -n $HTTP_PID ]]; then
    kill "$HTTP_PID" 2>/dev/null || true
    wait "$HTTP_PID" 2>/dev/null || true
  fi
  [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
  if ((STARTED_DAEMON)); then
    scripts/dockerd.sh stop || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_docker() {
  if [[ -z ${DOCKER_HOST:-} ]]; then
    local line
    if ! line=$(scripts/dockerd.sh status 2>/dev/null); then
      line=$(scripts/dockerd.sh start)
      STARTED_DAEMON=1
    fi
    eval "$line"
  fi
  export DOCKER_HOST
  "$DOCKER" version >/dev/null || die "no Docker daemon at $DOCKER_HOST"
  log "docker: $DOCKER_HOST ($("$DOCKER" info -f '{{.ServerVersion}}, storage {{.Driver}}, root {{.DockerRootDir}}'))"
}

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# --- base image -----------------------------------------------------------------------------
build_local_base() {
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
  local rootfs t0
  rootfs=$(mktemp -d "$STATE/rootfs.XXXXXX")
  t0=$(now_ms)
  log "base: debootstrap --variant=minbase bookworm ($BASE_PACKAGES) into $rootfs"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$rootfs" "$MIRROR" \
    >"$LOGS/base-debootstrap.log" 2>&1 || { tail -n 20 "$LOGS/base-debootstrap.log"; die "debootstrap failed"; }
  # The point release's packages plus security and stable updates, then no apt lists or caches.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  if ! chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade && apt-get clean' \
      >>"$LOGS/base-debootstrap.log" 2>&1; then
    umount "$rootfs/proc"; tail -n 20 "$LOGS/base-debootstrap.log"; die "apt-get upgrade in the base failed"
  fi
  umount "$rootfs/proc"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/* \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/root/.cache
  find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  local python_version
  python_version=$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')
  tar --numeric-owner --xattrs -C "$rootfs" -c . | "$DOCKER" import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["python3"]' \
    -c "LABEL org.opencontainers.image.description=\"Debian bookworm minbase (debootstrap) with Python $python_version\"" \
    -c "LABEL org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    - "$LOCAL_BASE" >/dev/null
  rm -rf "$rootfs"
  "$DOCKER" tag "$LOCAL_BASE" "${LOCAL_BASE}-$(date -u +%Y%m%d)"
  TIMES[base]=$(($(now_ms) - t0))
  log "base: $LOCAL_BASE (Python $python_version) in $(secs "${TIMES[base]}") s"
}

resolve_base() {
  if [[ -n ${DAMO_PYTHON_IMAGE:-} ]]; then
    BASE=$DAMO_PYTHON_IMAGE
    have_image "$BASE" || "$DOCKER" pull "$BASE" >/dev/null || die "cannot pull $BASE"
    return
  fi
  local official
  official=$(sed -n 's/^ARG PYTHON_IMAGE=//p' docker/Dockerfile.cpu)
  if have_image "$official" || timeout 60 "$DOCKER" pull "$official" >/dev/null 2>&1; then
    BASE=$official
  else
    BASE=$LOCAL_BASE
    log "base: $official cannot be pulled (no registry); using the local $LOCAL_BASE"
    if [[ ${DAMO_REBUILD_BASE:-0} == 1 ]] || ! have_image "$LOCAL_BASE"; then
      build_local_base
    fi
  fi
  log "base: PYTHON_IMAGE=$BASE"
}

# --- pip configuration as build secrets -----------------------------------------------------
reachable() {  # $1 URL: answers within 10 s (any HTTP status)
  python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
}

prepare_pip_secrets() {
  WORK=$(mktemp -d /tmp/damo-images.XXXXXX)
  chmod 700 "$WORK"
  mkdir -p "$WORK/secrets" "$WORK/srv"
  # Serve local pip sources read-only on 127.0.0.1 (builds run with --network host).
  python3 - "$WORK/srv" "$WORK/port" <<'EOF' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.log_message = lambda *a: None
with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
    open(sys.argv[2], "w").write(str(server.server_address[1]))
    server.serve_forever()
EOF
  HTTP_PID=$!
  for _ in $(seq 50); do [[ -s $WORK/port ]] && break; sleep 0.1; done
  [[ -s $WORK/port ]] || die "the local pip source server did not start"
  python3 -m pip config list >"$WORK/pip-config-list" 2>/dev/null || true
  python3 - "$WORK" "$(cat "$WORK/port")" "$WORK/pip-config-list" <<'EOF'
"""pip config list (merged: files, then PIP_* variables) -> secrets/pip.conf for the build:
local paths served over http://127.0.0.1, the certificate and constraints as secret files."""
import os, re, shutil, sys
from pathlib import Path
from urllib.parse import unquote, urlparse

work, port = Path(sys.argv[1]), sys.argv[2]
rank = {"global": 0, "install": 1, ":env:": 2}
merged: dict[str, tuple[int, str]] = {}
for line in open(sys.argv[3]):
    m = re.match(r"^(.+?)\.([\w-]+)='(.*)'$", line.strip())
    if m and m.group(1) in rank:
        r = rank[m.group(1)]
        if m.group(2) not in merged or merged[m.group(2)][0] <= r:
            merged[m.group(2)] = (r, m.group(3))
conf = {k: v for k, (_, v) in merged.items()}
served: dict[str, str] = {}

def serve(path: Path) -> str:
    if str(path) not in served:
        link = work / "srv" / str(len(served))
        link.symlink_to(path)
        served[str(path)] = f"http://127.0.0.1:{port}/{link.name}"
    return served[str(path)]

def local(value: str) -> Path | None:
    if value.startswith("file:"):
        return Path(unquote(urlparse(value).path))
    if value.startswith("/"):
        return Path(value)
    return None

out: dict[str, str] = {}
for key, value in conf.items():
    if key in ("index-url", "extra-index-url", "find-links"):
        urls = []
        for item in value.split():
            path = local(item)
            if path is None:
                urls.append(item)
            elif path.is_dir() and path.name == "simple" and key != "find-links":
                urls.append(serve(path.parent) + "/simple/")   # keeps ../../files links
            elif path.is_dir():
                urls.append(serve(path) + "/")
            elif path.is_file():
                urls.append(serve(path.parent) + "/" + path.name)
            else:
                print(f"pip {key}: {item} does not exist here; left out", file=sys.stderr)
        if urls:
            out[key] = " ".join(urls)
    elif key == "cert":
        shutil.copyfile(value, work / "secrets" / "pip-cert")
        out["cert"] = "/run/secrets/pip-cert"
    elif key == "constraint":
        text = "".join(Path(p).read_text() + "\n" for p in value.split() if Path(p).is_file())
        (work / "secrets" / "pip-constraints").write_text(text)
        out["constraint"] = "/run/secrets/pip-constraints"
    elif key in ("cache-dir", "log", "src", "target", "prefix", "root", "python", "user",
                 "no-cache-dir", "require-virtualenv", "client-cert", "requirement"):
        print(f"pip {key}: not passed to the build", file=sys.stderr)
    else:
        out[key] = value
(work / "secrets" / "pip.conf").write_text(
    "[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(out.items())))
for name in ("pip-cert", "pip-constraints"):
    (work / "secrets" / name).touch()
for p, url in served.items():
    print(f"pip source {p} -> {url}", file=sys.stderr)
EOF
  chmod 600 "$WORK"/secrets/*
  SECRETS=(--secret "id=pip.conf,src=$WORK/secrets/pip.conf"
           --secret "id=pip-cert,src=$WORK/secrets/pip-cert"
           --secret "id=pip-constraints,src=$WORK/secrets/pip-constraints")
  local pytorch=${DAMO_TORCH_INDEX:-auto}
  if [[ $pytorch == auto ]]; then
    if reachable https://download.pytorch.org/whl/cpu/; then pytorch=default; else pytorch=none; fi
  fi
  TORCH_ARGS=()
  [[ $pytorch == default ]] || TORCH_ARGS=(--build-arg "TORCH_INDEX_URL=$pytorch")
  log "pip: builder's configuration as secrets; torch index: $pytorch"
}

# --- builds ---------------------------------------------------------------------------------
declare -A TIMES=() TAGS=() NOTES=()

build() {  # $1 name, $2 dockerfile, $3 tag, rest: extra docker build args
  local name=$1 dockerfile=$2 tag=$3 t0 logfile
  shift 3
  logfile=$LOGS/$name-$(date +%Y%m%d-%H%M%S).log
  log "$name: building $tag from $dockerfile (log $logfile)"
  t0=$(now_ms)
  if ! "$DOCKER" build --network host --progress plain "${SECRETS[@]}" \
      --build-arg "PYTHON_IMAGE=$BASE" "$@" \
      --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
      --label "org.opencontainers.image.source=$dockerfile" \
      --label "org.opencontainers.image.title=$tag" \
      --label "org.opencontainers.image.description=DAMO-YOLO pipeline, $name image (base $BASE)" \
      --label "damo-pipeline.image=$name" \
      -f "$dockerfile" -t "$tag" . >"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2
    # A COPY of a path missing from the build context: one line naming the image and path.
    python3 scripts/build_checks.py copy-errors "$logfile" --image "$tag" \
      --dockerfile "$dockerfile" || true
    die "$name: build of $tag failed (log $logfile)"
  fi
  TIMES[$name]=$(($(now_ms) - t0))
  TAGS[$name]=$tag
  # The previous build of this image, now untagged (its layers stay in the build cache).
  "$DOCKER" image prune -f --filter "label=damo-pipeline.image=$name" >/dev/null
  local cached steps
  steps=$(grep -cE '^#[0-9]+ \[' "$logfile" || true)
  cached=$(grep -c ' CACHED$' "$logfile" || true)
  NOTES[$name]="$cached/$steps steps cached"
  log "$name: built in $(secs "${TIMES[$name]}") s (${NOTES[$name]})"
  check_imports "$name" "$tag"
}

# What runs in each image must import there (scripts/build_checks.py): the component bodies
# whose base_image is the image's constant; for Triton, the deployment's Python models.
check_imports() {  # $1 name, $2 tag
  local sources=()
  case $1 in
    cpu) sources=(--components-of DAMO_IMAGE) ;;
    gpu) sources=(--components-of DAMO_GPU_IMAGE) ;;
    triton) sources=(damo_core/serve/python_models.py) ;;
    *) return 0 ;;
  esac
  python3 scripts/build_checks.py imports "$2" "${sources[@]}" \
    || die "$1: $2 cannot import what runs in it (above); the image is left tagged for a look"
}

build_cpu() { build cpu docker/Dockerfile.cpu "$CPU_TAG" "${TORCH_ARGS[@]}"; }
build_triton() { build triton docker/Dockerfile.triton "$TRITON_TAG" "${TORCH_ARGS[@]}"; }

build_gpu() {
  local full=${DAMO_GPU_FULL:-auto}
  if [[ $full == auto ]]; then
    if reachable https://download.pytorch.org/whl/cu128/ && reachable https://pypi.nvidia.com/; then
      full=1
    else
      full=0
    fi
  fi
  if ((full)); then
    build gpu docker/Dockerfile.gpu "$GPU_TAG"
    return
  fi
  cat >&2 <<EOF
[images] gpu: PyTorch's CUDA index or pypi.nvidia.com is not reachable from this builder, so
  docker/Dockerfile.gpu is built with the CPU torch wheel and without TensorRT, and tagged
  ${GPU_TAG}-cputorch (never $GPU_TAG). On a GPU builder (DAMO_GPU_FULL=1) the differences are:
    torch           2.13.0+cu128 from https://download.pytorch.org/whl/cu128 (+ its nvidia-*
                    CUDA 12.8 wheels, several GB) instead of 2.13.0+cpu
    tensorrt-cu12   10.13.3.9 (sdist; fetches tensorrt_cu12_libs/bindings from pypi.nvidia.com)
                    and the build-time check 'python -c "import tensorrt"'
    runtime         the same stages, user, entrypoint and smoke checks; at run time the node's
                    NVIDIA container toolkit injects the driver (NVIDIA_VISIBLE_DEVICES=all)
EOF
  build gpu docker/Dockerfile.gpu "${GPU_TAG}-cputorch" --build-arg TORCH_VERSION=2.13.0+cpu \
    --build-arg TORCH_INDEX_URL=none --build-arg TENSORRT_VERSION=none
  NOTES[gpu]="${NOTES[gpu]}; CPU torch, no TensorRT"
}

# --- leftovers check ------------------------------------------------------------------------
check_image() {  # $1 tag: no pip configuration, secret or builder certificate in it
  local tag=$1 bad=0 cid needles
  have_image "$tag" || { log "check: $tag not built; skipped"; return 0; }
  # 1. history (every instruction, build arguments included) and the image configuration
  if "$DOCKER" history --no-trunc --format '{{.CreatedBy}}' "$tag" \
      | grep -nE 'http://127\.0\.0\.1:[0-9]+/|PIP_CERT=|PIP_FIND_LINKS=|BEGIN CERTIFICATE|/opt/wheels|/opt/pypi|extra-index-url ?=|find-links ?='; then
    log "check: $tag: pip configuration in the history (above)"; bad=1
  fi
  if "$DOCKER" image inspect -f '{{join .Config.Env "\n"}}' "$tag" | grep -E '^(PIP_|PYTHONPATH=|REQUESTS_CA|SSL_CERT|CURL_CA)'; then
    log "check: $tag: pip or certificate settings in the image's environment (above)"; bad=1
  fi
  # 2. the filesystem: pip configuration files, secret mount points with content, pip caches
  cid=$("$DOCKER" create --network none "$tag")
  "$DOCKER" export "$cid" >"$WORK/fs.tar"
  "$DOCKER" rm "$cid" >/dev/null
  if tar -tf "$WORK/fs.tar" \
      | grep -E '(^|/)pip\.(conf|ini)$|^etc/xdg/pip/|^root/\.config/pip/|^root/\.cache/pip/.|^run/secrets/.'; then
    log "check: $tag: pip configuration, cache or secret files (above)"; bad=1
  fi
  # ... and no file mentions the build's pip sources or the builder's pip settings
  local pattern='http://127\.0\.0\.1:[0-9]+/[0-9]+/' value
  for value in $(python3 -m pip config list 2>/dev/null \
      | sed -nE "s/^[^=]*\.(index-url|extra-index-url|find-links|constraint)='(.*)'$/\2/p"); do
    if ((${#value} > 5)); then
      pattern+="|$(printf '%s' "$value" | sed 's/[.[\*^$()+?{|]/\\&/g')"
    fi
  done
  if grep -aoE "$pattern" "$WORK/fs.tar" | sort | uniq -c | head; then
    log "check: $tag: files mention the builder's pip sources (above)"; bad=1
  fi
  # 3. the builder's own CA certificates (in its bundle, not from a distribution package)
  needles=$(python3 - "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" <<'EOF'
import re, sys
from pathlib import Path
pem = lambda text: set(re.findall(r"-----BEGIN CERTIFICATE-----\s*(.*?)-----END", text, re.S))
packaged = set().union(*(pem(p.read_text(errors="replace"))
                         for p in Path("/usr/share/ca-certificates").rglob("*.crt")))
for body in sorted(pem(open(sys.argv[1]).read()) - packaged):
    print(body.split()[1] if len(body.split()) > 1 else body[:64])
EOF
)
  local n=0 needle
  while read -r needle; do
    [[ -z $needle ]] && continue
    n=$((n + 1))
    if grep -qaF -- "$needle" "$WORK/fs.tar"; then
      log "check: $tag: holds one of the builder's own CA certificates"; bad=1
    fi
  done <<<"$needles"
  rm -f "$WORK/fs.tar"
  if ((bad)); then return 1; fi
  log "check: $tag: clean (history, environment, files; $n builder-only CA certificates absent)"
}

# --- smoke runs -----------------------------------------------------------------------------
smoke() {
  local t0 out
  if have_image "$CPU_TAG"; then
    t0=$(now_ms)
    "$DOCKER" run --rm --network host "$CPU_TAG" --help >/dev/null
    log "smoke: cpu: damo --help ok ($(secs $(($(now_ms) - t0))) s)"
    t0=$(now_ms)
    out=$("$DOCKER" run --rm --network host --entrypoint sh "$CPU_TAG" -c \
      'damo data synth --out synth --images 8 --img-size 128 >/dev/null && find synth -type f | sort | sed -n "1p;\$p" && find synth -type f | wc -l')
    log "smoke: cpu: damo data synth ok ($(secs $(($(now_ms) - t0))) s): ${out//$'\n'/ }"
  fi
  if have_image "$TRITON_TAG"; then
    local ports name=damo-triton-smoke-$$ deadline health=""
    read -r -a ports < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1", 0)) for s in socks]
print(*[s.getsockname()[1] for s in socks])')
    t0=$(now_ms)
    "$DOCKER" run -d --rm --name "$name" --network host -e "TRITON_HTTP_PORT=${ports[1]}" \
      --health-interval 2s --health-start-period 60s "$TRITON_TAG" \
      --model-repository=/models --model-control-mode=none \
      --http-address=127.0.0.1 --http-port="${ports[1]}" --grpc-address=127.0.0.1 \
      --grpc-port="${ports[0]}" --metrics-address=127.0.0.1 --metrics-port="${ports[2]}" >/dev/null
    deadline=$((SECONDS + 120))
    until reachable_ok "http://127.0.0.1:${ports[1]}/v2/health/ready"; do
      if ((SECONDS > deadline)) || ! "$DOCKER" inspect "$name" >/dev/null 2>&1; then
        "$DOCKER" logs "$name" 2>&1 | tail -n 20 >&2 || true
        "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
        die "smoke: triton: not ready on 127.0.0.1:${ports[1]}"
      fi
      sleep 0.5
    done
    log "smoke: triton: /v2/health/ready 200 on 127.0.0.1:${ports[1]} after $(secs $(($(now_ms) - t0))) s"
    deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
      health=$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$name")
      [[ $health == starting ]] || break
      sleep 1
    done
    log "smoke: triton: HEALTHCHECK status $health; server: $(curl_json "http://127.0.0.1:${ports[1]}/v2")"
    "$DOCKER" rm -f "$name" >/dev/null
    [[ $health == healthy ]] || die "smoke: triton: HEALTHCHECK reports $health"
  fi
}

reachable_ok() {  # $1 URL answers 200
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

curl_json() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

summary() {
  local name tag size
  printf '\n%-8s %-50s %10s %10s  %s\n' image tag "size MB" "build s" notes
  for name in base cpu triton gpu; do
    [[ -n ${TIMES[$name]:-} ]] || continue
    if [[ $name == base ]]; then tag=$LOCAL_BASE; else tag=${TAGS[$name]}; fi
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
    printf '%-8s %-50s %10d %10s  %s\n' "$name" "$tag" $((size / 1000000)) \
      "$(secs "${TIMES[$name]}")" "${NOTES[$name]:-}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$tag" "$size" \
      "${TIMES[$name]}" "${NOTES[$name]:-}" >>"$STATE/build-times.tsv"
  done
}

main() {
  local targets=("$@") t
  ((${#targets[@]})) || targets=(cpu triton gpu smoke check)
  [[ $(id -u) == 0 ]] || die "needs root (private dockerd, debootstrap)"
  mkdir -p "$LOGS"
  ensure_docker
  resolve_base
  prepare_pip_secrets
  if [[ ${DAMO_COLD:-0} == 1 ]]; then  # once: later images reuse what earlier ones cached
    "$DOCKER" image rm -f "$CPU_TAG" "$TRITON_TAG" "$GPU_TAG" "${GPU_TAG}-cputorch" >/dev/null 2>&1 || true
    "$DOCKER" builder prune -af >/dev/null
    log "cold: images and the whole build cache (layers, pip download cache) dropped"
  fi
  for t in "${targets[@]}"; do
    case $t in
      base) [[ -n ${TIMES[base]:-} ]] || build_local_base ;;  # rebuild (drops every cache hit)
      cpu) build_cpu ;;
      triton) build_triton ;;
      gpu) build_gpu ;;
      smoke) smoke ;;
      check)
        local failed=0 tag
        for tag in "$CPU_TAG" "$TRITON_TAG" "$GPU_TAG" "${GPU_TAG}-cputorch"; do
          check_image "$tag" || failed=1
        done
        ((failed == 0)) || die "leftovers found"
        ;;
      check=*) check_image "${t#check=}" || die "leftovers found in ${t#check=}" ;;
      build=*:*) t=${t#build=}; build "$(basename "${t%%:*}")" "${t%%:*}" "${t#*:}" ;;
      *) die "unknown target $t (base, cpu, triton, gpu, smoke, check, check=IMAGE, build=FILE:TAG)" ;;
    esac
  done
  summary
}

main "$@"
