#!/usr/bin/env bash
# Set up a venv with clipper-deploy-core and run the quickstart. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q uv
[ -x .venv/bin/python ] || python3 -m uv venv -q .venv
python3 -m uv pip install -q --python .venv/bin/python -e .
exec .venv/bin/python examples/quickstart.py "$@"
