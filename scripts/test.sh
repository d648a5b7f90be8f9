#!/usr/bin/env bash
# The whole test matrix: every nox session (pass session names to run fewer: bash scripts/test.sh -s core lint).
# Needs only python3: it makes .venv with nox and uv (never touching the system interpreter), and installs or starts
# what the sessions need where it can: Java (pyspark) and a private Docker engine (docker) when run as root with
# apt, and Debian's Chromium (browser). Where it cannot, it stops at once and says what to install and which sessions
# run without it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 UV_PYTHON_DOWNLOADS=never
. scripts/venv.sh
.venv/bin/python -m uv pip install -q --python .venv/bin/python "nox>=2024.10.9"

root=false
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && root=true
apt_install() { apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }; }
# With session names given, only what those sessions need.
wants() { [ -z "$args" ] || printf '%s\n' "$args" | grep -q -e "$1" -e all_plugins -e "-t"; }
args="$*"
missing=()
if wants pyspark && ! command -v java >/dev/null; then
  if $root; then apt_install default-jre-headless; else
    missing+=("Java 17+ for nox -s 'plugin(pyspark)': sudo apt-get install default-jre-headless"); fi
fi
if wants browser && ! command -v chromium >/dev/null; then
  if $root; then apt_install chromium; else
    missing+=("Debian's Chromium for nox -s browser: sudo apt-get install chromium"); fi
fi
engine_state=""
if wants docker && [ -z "${DOCKER_HOST:-}" ] && ! { command -v docker >/dev/null && docker version >/dev/null 2>&1; }; then
  if $root; then
    # A private engine with a local Debian root image (no registry needed), stopped (mounts included) on exit.
    engine_state=$(mktemp -d /tmp/clipper-test-docker.XXXXXX)
    trap 'bash scripts/docker-engine.sh stop "$engine_state"; rm -rf "$engine_state"' EXIT
    DOCKER_HOST=$(bash scripts/docker-engine.sh start "$engine_state")
    export DOCKER_HOST CLIPPER_DEPLOY_PRIVATE_ENGINE=1  # the docker session prunes it when done
  else
    missing+=("a Docker engine for nox -s docker: sudo apt-get install docker.io, add yourself to the docker group
    (or set DOCKER_HOST), and import a root image: bash scripts/docker-engine.sh shows how it builds local/debian:bookworm")
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "The test matrix needs:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "Sessions that run without them: .venv/bin/python -m nox -s core lint kubernetes build \\" >&2
  echo "  'plugin(keras)' 'plugin(mxnet)' 'plugin(onnx)' 'plugin(pytorch)' 'plugin(tensorflow)'" >&2
  exit 2
fi
export PATH="$PWD/.venv/bin:$PATH"  # uv for the sessions that build wheels or environments
.venv/bin/python -m nox "$@"
