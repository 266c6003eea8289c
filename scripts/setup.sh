#!/usr/bin/env bash
# Set up a development environment in .venv: PyTorch's CPU build first (pinned), then
# recloop with every extra and test tool.
#
#   scripts/setup.sh               # everything
#   scripts/setup.sh --torch-only  # only the torch step (checks, or installs, the CPU build)
#
# Why torch is installed on its own, and how: on Linux, PyPI's `torch` wheel is the CUDA
# build (several GB with its nvidia-* wheels). PyTorch publishes CPU-only wheels on its
# own index, so torch is installed from there first (TORCH_INDEX_URL, default
# https://download.pytorch.org/whl/cpu, as PyTorch's install page says); recloop's
# `torch>=2.4` is then already satisfied and pip fetches nothing more. The index is an
# option that falls back cleanly:
#   * a torch==TORCH_VERSION already in the venv (any build) is kept: nothing is fetched;
#   * the index is tried with a short timeout and one retry, so an unreachable host costs
#     seconds, not minutes; pip's own sources (a configured mirror, find-links wheels)
#     still count during that attempt;
#   * if that attempt fails, torch comes from pip's configured index, with a warning that
#     on Linux this may be the CUDA build. TORCH_INDEX_URL= (empty) goes there directly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
PIP=(.venv/bin/python -m pip)

elapsed() { echo "$(( $(date +%s) - START ))s"; }

torch_present() {
    .venv/bin/python - "$TORCH_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
installed = version("torch")
print(installed)
sys.exit(0 if installed.split("+")[0] == sys.argv[1] else 1)
EOF
}

install_torch() {
    local installed
    if installed=$(torch_present); then
        echo "      torch $installed is already installed; nothing to fetch"
        return
    fi
    if [ -n "$TORCH_INDEX_URL" ]; then
        echo "      from $TORCH_INDEX_URL (CPU-only wheels; a few hundred MB)..."
        if "${PIP[@]}" install -q --timeout 15 --retries 1 --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"; then
            echo "      torch $(torch_present) installed"
            return
        fi
        echo "      $TORCH_INDEX_URL failed; falling back to pip's configured index" >&2
    fi
    echo "      warning: on Linux, PyPI's torch is the CUDA build (several GB)" >&2
    "${PIP[@]}" install -q "torch==$TORCH_VERSION"
    echo "      torch $(torch_present || true) installed"
}

START=$(date +%s)
if [ "${1:-}" = "--torch-only" ]; then
    [ -x .venv/bin/python ] || { echo "no .venv here; run scripts/setup.sh first" >&2; exit 1; }
    echo "[1/1] torch $TORCH_VERSION (CPU build)..."
    install_torch
    exit 0
fi
echo "[1/4] virtual environment in .venv..."
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "[2/4] pip (upgrade)... ($(elapsed))"
"${PIP[@]}" install -q --upgrade pip
echo "[3/4] torch $TORCH_VERSION (CPU build)... ($(elapsed))"
install_torch
echo "[4/4] recloop with every extra and the test tools (about a minute)... ($(elapsed))"
"${PIP[@]}" install -q -e ".[all,dev]"
echo "recloop installed in .venv ($(.venv/bin/python -c 'import recloop; print(recloop.__version__)')) in $(elapsed)"
