#!/usr/bin/env bash
# Start or stop a private Docker engine for the tests, with a local Debian root image (no registry is reachable).
#   .ci/docker-engine.sh start STATE_DIR   -> prints the DOCKER_HOST to export
#   .ci/docker-engine.sh stop STATE_DIR
set -euo pipefail
cmd=$1 state=$(realpath -m "$2")
sock=unix://$state/docker.sock

case $cmd in
start)
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get install -y -q docker.io debootstrap >/dev/null 2>&1 || {
      apt-get update -q >/dev/null && apt-get install -y -q docker.io debootstrap >/dev/null; }
  fi
  mkdir -p "$state"
  dockerd --host "$sock" --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
    --bridge=none --iptables=false --ip-forward=false --ip-masq=false >"$state/dockerd.log" 2>&1 &
  for _ in $(seq 1 300); do DOCKER_HOST=$sock docker version >/dev/null 2>&1 && break; sleep 0.1; done
  DOCKER_HOST=$sock docker version >/dev/null || { tail -20 "$state/dockerd.log" >&2; exit 1; }
  if ! DOCKER_HOST=$sock docker image inspect local/debian:bookworm >/dev/null 2>&1; then
    # The Debian mirror apt already uses is the one this machine can reach.
    mirror=$( (cat /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true) \
             | grep -oE '^(URIs:|deb) +\S+' | awk '{print $2}' | grep -m1 debian || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    [ -f "$state/rootfs.tar" ] || {
      debootstrap --variant=minbase bookworm "$state/rootfs" "$mirror" >"$state/debootstrap.log" 2>&1
      tar -C "$state/rootfs" -cf "$state/rootfs.tar" . && rm -rf "$state/rootfs"; }
    DOCKER_HOST=$sock docker import "$state/rootfs.tar" local/debian:bookworm >/dev/null
  fi
  echo "$sock"
  ;;
stop)
  if [ -f "$state/dockerd.pid" ]; then
    pid=$(cat "$state/dockerd.pid")
    DOCKER_HOST=$sock docker ps -aq | xargs -r env DOCKER_HOST=$sock docker rm -f >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  umount "$state/exec/netns/default" 2>/dev/null || true
  umount "$state/data" 2>/dev/null || true
  ;;
*) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
esac
