"""Helpers shared by the benchmark scripts: timing and writing docs/benchmarks.md.

Each script owns one section of ``docs/benchmarks.md``, delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->``, and rewrites only that section.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


def data_dir() -> str:
    return os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))


def median_time(function, repeats: int = 3) -> tuple[float, list[float]]:
    """Median wall seconds of ``function()`` over ``repeats`` runs, and all runs."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def machine() -> str:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), commit {commit.strip() or '?'}, {time.strftime('%Y-%m-%d')}")


def update_section(name: str, markdown: str, path: Path = DOC) -> None:
    """Replace (or append) the section ``name`` of the benchmarks document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEvery table here is written by a script in `benchmarks/`; the command is given with each.\n"
    block = f"<!-- BEGIN {name} -->\n{markdown.strip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
