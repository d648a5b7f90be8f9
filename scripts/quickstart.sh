#!/usr/bin/env bash
# Set up .venv with clipper-deploy-core and run the quickstart. Needs only python3; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
.venv/bin/python -m uv pip install -q --python .venv/bin/python -e .
exec .venv/bin/python examples/quickstart.py "$@"
