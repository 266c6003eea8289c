#!/usr/bin/env bash
# Set up a development environment in .venv: PyTorch's CPU build first (pinned, so pip
# does not fetch a multi-GB CUDA build), then recloop with every extra and test tool.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[all,dev]"
echo "recloop installed in .venv ($(.venv/bin/python -c 'import recloop; print(recloop.__version__)'))"
