"""Loading a large Parquet log: seconds and peak memory against the size of its columns.

    python benchmarks/load_scale.py /tmp/ml100k-1e7 [--baseline REF] [--json FILE]

loads a folder of Parquet shards (as written by ``recloop/data/expand.py``: ``user_id``,
``item_id`` int32, ``timestamp`` int64, ``rating`` float32) with
``load_dataset(folder, columns=ColumnMapping(rating="rating", timestamp="timestamp"))``
in a fresh process under ``/usr/bin/time -v``, and reports

- ``load_s`` (wall) and ``load_cpu_s`` (the process' CPU time) of the call alone;
- ``peak_rss_gb``: the process' maximum resident set size right after the call (the
  kernel's high-water mark, as ``/usr/bin/time -v`` reports it), which includes Python,
  NumPy, pandas and pyarrow (``rss_before_load_gb``: the mark after the imports, before
  the call); ``process_max_rss_gb`` is ``/usr/bin/time -v``'s figure for the whole
  process, which also counts the checksum computed after the load;
- ``column_gb``: the size of the loaded columns at their own widths (4+4+8+4 = 20 bytes a
  row), and ``peak_over_columns`` = peak / column_gb and ``load_over_columns`` =
  (peak - before) / column_gb, the memory that loading itself adds.
- ``checksum``: counts and a SHA-256 of the loaded arrays and vocabularies.

``--csv`` also writes the same log as one CSV file (header, comma-separated; in a
temporary folder) and loads that, through the delimited-text reader.

``--sequences`` also writes it as one ``user item1 item2 ...`` line per user (items in
time order; the Amazon layout) and loads that through the sequence reader (the log then
has no rating, and positions for times, so its checksum differs from the others').

``--baseline REF`` runs the same load(s) with the library as it was at git ``REF`` (extracted
with ``git archive`` into a temporary folder), to compare old and new on one machine, and
says whether both loaded the same log (same checksum).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("user_id", "item_id", "timestamp", "rating")

CHILD = r"""
import hashlib, json, resource, sys, time
from recloop.data import ColumnMapping, load_dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
wall, cpu = time.perf_counter(), time.process_time()
log = load_dataset(sys.argv[1], columns=ColumnMapping(rating="rating", timestamp="timestamp")).interactions
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the high-water mark of the load, before the checksum
digest = hashlib.sha256()
for array in (log.user_idx.astype("<i8"), log.item_idx.astype("<i8"), log.rating, log.timestamp.astype("<i8")):
    if array is not None:
        digest.update(array.astype(array.dtype.newbyteorder("<")).tobytes())
digest.update("\n".join(log.users.to_list()).encode() + b"|" + "\n".join(log.items.to_list()).encode())
print("RESULT " + json.dumps({"interactions": len(log), "users": log.n_users, "items": log.n_items,
                              "load_s": round(wall, 2), "load_cpu_s": round(cpu, 2),
                              "rss_before_load_gb": round(before / 1e9, 3), "peak_rss_gb": round(peak / 1e9, 3), "checksum": digest.hexdigest()[:16]}))
"""


def column_bytes(folder: Path) -> tuple[int, int]:
    """Rows and bytes of the loaded columns at their Arrow widths."""
    rows, width = 0, 0
    for shard in sorted(folder.glob("*.parquet")):
        schema = pq.read_schema(shard)
        rows += pq.ParquetFile(shard).metadata.num_rows
        width = sum(schema.field(c).type.bit_width // 8 for c in COLUMNS)
    return rows, rows * width


def write_sequences(folder: Path, path: Path) -> None:
    """One line per user, ``user item1 item2 ...`` in time order (set-up, not timed)."""
    import numpy as np

    table = pq.read_table(sorted(folder.glob("*.parquet")), columns=["user_id", "item_id", "timestamp"])
    users, items, times = (table.column(c).to_numpy() for c in ("user_id", "item_id", "timestamp"))
    order = np.lexsort((times, users))
    users, items = users[order], items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    with open(path, "w") as f:
        f.writelines(f"{users[start]} {' '.join(map(str, items[start:end].tolist()))}\n" for start, end in zip(starts, ends, strict=True))


def measure(folder: Path, code_root: Path) -> dict:
    """One load in a fresh process whose ``recloop`` comes from ``code_root``."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    # cwd too: `python -c` puts the working directory before PYTHONPATH on sys.path
    run = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", CHILD, str(folder.resolve())],
                         capture_output=True, text=True, env=env, cwd=code_root, check=False)
    if run.returncode != 0:
        raise SystemExit(f"load failed ({code_root}):\n{run.stdout}\n{run.stderr}")
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    max_rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    result["process_max_rss_gb"] = round(max_rss_kb * 1024 / 1e9, 3)  # with the checksum after the load
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of Parquet shards (recloop data expand's output)")
    parser.add_argument("--baseline", help="also load with the library at this git ref (e.g. a commit)")
    parser.add_argument("--csv", action="store_true", help="also load the same log written as one CSV file")
    parser.add_argument("--sequences", action="store_true", help="also load it written as one sequence per line")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    rows, size = column_bytes(args.folder)
    runs = {"current": ROOT}
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.baseline:
            archive = subprocess.run(["git", "archive", args.baseline, "recloop"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            (scratch / "baseline").mkdir()
            subprocess.run(["tar", "-x", "-C", str(scratch / "baseline")], input=archive, check=True)
            runs[args.baseline] = scratch / "baseline"
        sources = {"parquet": args.folder}
        if args.csv:
            sources["csv"] = scratch / f"{args.folder.name}.csv"
            pacsv.write_csv(pq.read_table(sorted(args.folder.glob("*.parquet")), columns=list(COLUMNS)),
                            sources["csv"])
        if args.sequences:
            sources["sequences"] = scratch / f"{args.folder.name}.txt"
            write_sequences(args.folder, sources["sequences"])
        for kind, source in sources.items():
            for label, code in runs.items():
                result = measure(source, code)
                result.update(rows=rows, column_gb=round(size / 1e9, 3),
                              peak_over_columns=round(result["peak_rss_gb"] * 1e9 / size, 2),
                              load_over_columns=round((result["peak_rss_gb"] - result["rss_before_load_gb"]) * 1e9
                                                      / size, 2))
                results[f"{kind} {label}"] = result
                print(f"{kind} {label:>10}: {json.dumps(result)}", flush=True)
    for kind in sources:
        checksums = {r["checksum"] for label, r in results.items() if label.startswith(kind + " ")}
        print(f"{kind}: every loader gave the same log: {len(checksums) == 1}")
    tables = {r["checksum"] for label, r in results.items() if not label.startswith("sequences ")}
    print(f"Parquet and CSV gave the same log: {len(tables) == 1}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"folder": str(args.folder), "load_average_1min": os.getloadavg()[0],
                                         "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
