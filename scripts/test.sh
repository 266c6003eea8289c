#!/usr/bin/env bash
# Run the whole test suite. Real datasets are read from $RECLOOP_DATA_DIR
# (default: ../shared/datasets beside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
export RECLOOP_DATA_DIR=${RECLOOP_DATA_DIR:-$(cd .. && pwd)/shared/datasets}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
