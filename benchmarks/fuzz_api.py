"""Fuzz a running recloop server from its own OpenAPI schema; count answers >= 500.

    python benchmarks/fuzz_api.py --url http://127.0.0.1:8000 [--requests 2000] [--api-key KEY]
    python benchmarks/fuzz_api.py --artifact runs/ml100k/models/ease   # starts (and stops) a server itself

Requests come from schemathesis (``schemathesis`` in the ``dev`` extra), valid ones
("positive") and invalid ones ("negative") in turn, spread over every operation of
``/openapi.json``, plus the hand-written cases of issue 10 (``NaN``/``Infinity``/``1e400``
tokens, lone surrogates, absurd event times, values beyond float32, lax types, broken
reload paths), which no schema-driven client sends. Each answer is also checked against
the schema (status code documented, body valid); those mismatches are counted apart.

Prints a JSON summary (requests, answers by status, the 5xx cases as curl commands) and
exits 1 if any answer was >= 500.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

#: Bodies only a hand can write (JSON text, sent as is): the cases that gave 500 before issue 10.
ISSUE_CASES: list[tuple[str, str, str]] = [
    *[("POST", "/recommend", f'{{"user_id": "1", "k": {t}}}') for t in ("NaN", "Infinity", "-Infinity", "1e400")],
    *[("POST", "/recommend", f'{{"user_id": "1", "diversity": {t}}}') for t in ("NaN", "Infinity", "-Infinity", "1e400")],
    ("POST", "/recommend", '{"user_id": "\\ud800"}'),
    ("POST", "/recommend", '{"items": ["\\ud800"]}'),
    ("POST", "/recommend", '{"user_id": "1", "\\ud800": 1}'),
    ("POST", "/recommend", '{"user_id": "1", "filters": {"\\ud800": ["x"]}}'),
    ("POST", "/recommend", '{"user_id": "1", "k": true}'),
    ("POST", "/recommend", '{"user_id": "  "}'),
    ("POST", "/recommend", '{"user_id": NaN}'),
    *[("POST", "/events", f'{{"user_id": "1", "item_id": "1", "type": "click", "time": {t}}}')
      for t in ("NaN", '"nan"', "Infinity", "-Infinity", "1e400", "1e300", "-1e308", '"0001-01-01T00:00:00"',
                '"9999-12-31T23:59:59"')],
    *[("POST", "/events", f'{{"user_id": "1", "item_id": "1", "type": "rate", "value": {v}}}')
      for v in ("NaN", "Infinity", "1e308", "1e400")],
    ("POST", "/events", '{"user_id": "\\ud800", "item_id": "1", "type": "click"}'),
    ("POST", "/events", '[{"user_id": "1", "item_id": "1", "type": "click", "time": NaN}]'),
    ("POST", "/items", '{"item_id": "fuzz-new", "text": "\\ud800"}'),
    ("POST", "/items", '{"item_id": "\\ud800", "text": "x"}'),
    ("POST", "/items", '{"item_id": "fuzz-new", "text": NaN}'),
    ("POST", "/items", '{"item_id": "fuzz-new", "text": "x", "features": {"genre": ["\\ud800"]}}'),
    ("POST", "/admin/reload", json.dumps({"artifact": "x" * 5000})),
    ("POST", "/admin/reload", json.dumps({"artifact": "/tmp/" + "y" * 300})),
    ("POST", "/admin/reload", json.dumps({"artifact": "/nonexistent"})),
    ("POST", "/admin/reload", '{"artifact": "\\ud800"}'),
    ("GET", "/items/1/similar?diversity=NaN", ""),
    ("GET", "/items/1/similar?k=1e400", ""),
    ("GET", "/items/%ED%A0%80", ""),
    ("GET", "/items?q=%ED%A0%80", ""),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifact: str, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1"}
    log = open(folder / "server.log", "ab")  # noqa: SIM115 - the server writes it until it stops
    process = subprocess.Popen([sys.executable, "-m", "recloop", "serve", artifact, "--port", str(port),
                                "--db", str(folder / "events.db"), "--log-level", "warning"],
                               stdout=log, stderr=log, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {folder / 'server.log'}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the server did not answer /health in 180 s")


def fuzz(url: str, total: int, api_key: str | None = None, seed: int = 0) -> dict:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import response_schema_conformance, status_code_conformance

    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"X-API-Key": api_key} if api_key else {}
    statuses: collections.Counter = collections.Counter()
    by_operation: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    server_errors: list[dict] = []
    mismatches: list[str] = []
    sent = [0]

    def record(label: str, status: int, describe) -> None:
        sent[0] += 1
        statuses[status] += 1
        by_operation[label][status] += 1
        if status >= 500:
            server_errors.append({"operation": label, "status": status, "request": describe()})

    # The issue's hand-written cases, on one keep-alive connection: each must be a 4xx,
    # and the connection must stay usable for the next.
    with httpx.Client(base_url=url, headers={**headers, "content-type": "application/json"}, timeout=60) as client:
        for method, path, body in ISSUE_CASES:
            answer = client.request(method, path, content=body.encode() if body else None)
            shown = f"{method} {path} {body}"
            record(f"{method} {path.split('?')[0]} (issue case)", answer.status_code, lambda shown=shown: shown)

    def runner(operation, mode, examples: int):
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(base_url=url, headers=headers, timeout=60)
            record(label, response.status_code, case.as_curl_command)
            for check in (status_code_conformance, response_schema_conformance):
                try:
                    case.validate_response(response, checks=[check])
                except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - every mismatch is counted
                    if len(mismatches) < 20:
                        mismatches.append(f"{label} {response.status_code}: {str(error)[:300]}")
                    statuses["schema mismatch"] += 1

        return run

    rounds = 0
    per_round = max(1, (total - sent[0]) // (2 * len(operations)) + 1)
    while sent[0] < total and rounds < 50:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for operation in operations:
                try:
                    runner(operation, mode, per_round)()
                except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - costs its operation only
                    where = f"{operation.method.upper()} {operation.path}, {mode.value}"
                    statuses[f"not generated ({where}): {type(error).__name__}"] += 1
        rounds += 1
    return {"url": url, "requests": sent[0], "responses_5xx": sum(n for s, n in statuses.items()
                                                                   if isinstance(s, int) and s >= 500),
            "by_status": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "by_operation": {k: {str(s): n for s, n in sorted(v.items())} for k, v in sorted(by_operation.items())},
            "issue_cases": len(ISSUE_CASES), "server_errors": server_errors[:20], "schema_mismatches": mismatches}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    where.add_argument("--artifact", help="start `recloop serve ARTIFACT` on a free port with a fresh event store")
    parser.add_argument("--requests", type=int, default=2000, help="at least this many requests (default 2000)")
    parser.add_argument("--api-key", default=os.environ.get("RECLOOP_API_KEY"))
    parser.add_argument("--output", help="also write the summary JSON here")
    args = parser.parse_args()
    process = None
    try:
        if args.artifact:
            folder = Path(tempfile.mkdtemp(prefix="recloop-fuzz-"))
            process, url = start_server(args.artifact, folder)
        else:
            url = args.url.rstrip("/")
        start = time.perf_counter()
        summary = fuzz(url, args.requests, args.api_key)
        summary["seconds"] = round(time.perf_counter() - start, 1)
    finally:
        if process is not None:
            import signal

            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 1 if summary["responses_5xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
