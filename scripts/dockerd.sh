#!/usr/bin/env bash
# A private Docker daemon for building and trying the images on a machine without one
# (scripts/images.sh). It never touches a system daemon: its own data root (the image and
# build cache, kept between runs), its own exec root and socket in a temporary directory,
# no iptables rules and no bridge (containers and builds use --network host).
#
#   scripts/dockerd.sh start     # prints: export DOCKER_HOST=unix:///tmp/damo-dockerd.XXXX/docker.sock
#   scripts/dockerd.sh status    # running or not, and the DOCKER_HOST
#   scripts/dockerd.sh stop      # SIGTERM to the daemon's PID, bounded wait, then SIGKILL
#
# Settings (environment): DAMO_DOCKER_DATA (data root, default /var/tmp/damo-docker/data),
# DAMO_DOCKER_STORAGE (overlay2, vfs; default: overlay2, falling back to vfs if the daemon
# cannot start with it), DAMO_DOCKER_TIMEOUT (seconds to wait for readiness, default 60).
# Needs root and Debian's docker.io package (dockerd, containerd, runc):
#   apt-get install -y --no-install-recommends docker.io
set -euo pipefail

DATA=${DAMO_DOCKER_DATA:-/var/tmp/damo-docker/data}
STATE=$(dirname "$DATA")            # holds the pointer to the current runtime directory
POINTER=$STATE/runtime-dir
TIMEOUT=${DAMO_DOCKER_TIMEOUT:-60}
DOCKER=/usr/bin/docker              # the docker.io client, matching the daemon's API

die() { echo "dockerd.sh: $*" >&2; exit 1; }

runtime_dir() { if [[ -f $POINTER ]]; then cat "$POINTER"; fi; }

daemon_pid() {
  local run pid
  run=$(runtime_dir)
  [[ -n $run && -f $run/dockerd.pid ]] || return 1
  pid=$(cat "$run/dockerd.pid")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

host_of() { echo "unix://$1/docker.sock"; }

try_start() {  # $1 runtime dir, $2 storage driver; 0 when the daemon answers within TIMEOUT
  local run=$1 driver=$2 pid deadline
  : >"$run/dockerd.log"
  # setsid: the daemon is its own session, so nothing signals it but stop (by its PID).
  setsid dockerd \
    --data-root "$DATA" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
    -H "$(host_of "$run")" --storage-driver "$driver" \
    --iptables=false --ip-masq=false --bridge=none --ip-forward=false \
    --userland-proxy=false --log-level warn \
    >>"$run/dockerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$run/dockerd.launch-pid"
  deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      release_data_root
      return 1
    fi
    if DOCKER_HOST=$(host_of "$run") "$DOCKER" version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 20 || kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || true
  release_data_root
  return 1
}

release_data_root() {
  # dockerd bind-mounts its data root onto itself (to make it a private mount) and a daemon
  # that dies early leaves that behind. Only such a self bind mount (its root in mountinfo is
  # a subdirectory, not "/") is undone, never a file system mounted there on purpose.
  local data
  data=$(realpath "$DATA")
  if awk -v dir="$data" '$5 == dir && $4 != "/" {found = 1} END {exit !found}' /proc/self/mountinfo; then
    umount "$data" 2>/dev/null || true
  fi
}

wait_gone() {  # $1 pid, $2 seconds
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

start() {
  [[ $(id -u) == 0 ]] || die "needs root (it runs dockerd)"
  { command -v dockerd >/dev/null && [[ -x $DOCKER ]]; } \
    || die "dockerd is missing: apt-get install -y --no-install-recommends docker.io"
  if pid=$(daemon_pid); then
    echo "export DOCKER_HOST=$(host_of "$(runtime_dir)")"
    echo "dockerd.sh: already running (pid $pid)" >&2
    return 0
  fi
  mkdir -p "$DATA"
  local run t0 driver drivers
  # Short path: containerd's sockets live under the exec root (unix socket paths <= 108 bytes).
  run=$(mktemp -d /tmp/damo-dockerd.XXXXXX)
  chmod 700 "$run"
  echo "$run" >"$POINTER"
  drivers=${DAMO_DOCKER_STORAGE:-overlay2 vfs}
  t0=$(date +%s%N)
  for driver in $drivers; do
    if try_start "$run" "$driver"; then
      echo "$driver" >"$run/storage-driver"
      local ms=$((($(date +%s%N) - t0) / 1000000))
      printf 'dockerd.sh: ready in %d.%03d s (pid %s, storage driver %s, data root %s, log %s)\n' \
        $((ms / 1000)) $((ms % 1000)) "$(cat "$run/dockerd.pid")" "$driver" "$DATA" \
        "$run/dockerd.log" >&2
      echo "export DOCKER_HOST=$(host_of "$run")"
      return 0
    fi
    echo "dockerd.sh: storage driver $driver failed; log tail:" >&2
    tail -n 5 "$run/dockerd.log" >&2 || true
  done
  die "dockerd did not become ready within ${TIMEOUT}s with any of: $drivers (log: $run/dockerd.log)"
}

stop() {
  local run pid
  run=$(runtime_dir)
  if ! pid=$(daemon_pid); then
    echo "dockerd.sh: not running" >&2
  else
    kill -TERM "$pid"
    if ! wait_gone "$pid" "$TIMEOUT"; then
      echo "dockerd.sh: pid $pid still running after ${TIMEOUT}s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || die "pid $pid does not exit"
    fi
    echo "dockerd.sh: stopped (pid $pid); data root kept at $DATA" >&2
  fi
  release_data_root
  # The runtime directory goes too: first what the daemon leaves mounted in it (its network
  # namespace file, exec-root/netns/default), deepest first; then the directory, if nothing is
  # mounted below it any more.
  if [[ -n $run && -d $run ]] && ! daemon_pid >/dev/null; then
    local mnt
    awk -v dir="$run/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r \
      | while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; done
    if ! awk -v dir="$run/" 'index($2, dir) == 1 {found = 1} END {exit !found}' /proc/mounts; then
      rm -rf "$run"
      [[ $(runtime_dir) == "$run" ]] && rm -f "$POINTER"
    else
      echo "dockerd.sh: $run still has mounts; left in place" >&2
    fi
  fi
}

status() {
  local pid
  if pid=$(daemon_pid); then
    echo "export DOCKER_HOST=$(host_of "$(runtime_dir)")"
    echo "dockerd.sh: running (pid $pid, storage driver $(cat "$(runtime_dir)/storage-driver" \
      2>/dev/null || echo '?'), data root $DATA)" >&2
  else
    echo "dockerd.sh: not running" >&2
    return 1
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
