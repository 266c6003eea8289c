"""An open-loop HTTP load generator: requests leave at a fixed offered rate whether or
not earlier ones have come back, so latency under load is measured honestly (no
coordinated omission: a request's latency counts from when it was *due*, not from
when a free connection let it go).

Plain asyncio over keep-alive HTTP/1.1 connections with pre-built request bytes, so
the generator stays light beside the server on a small machine. Arrivals are Poisson
at ``rate`` per second. Used by ``serve_load.py``; also runnable alone::

    python benchmarks/loadgen.py http://127.0.0.1:8000/recommend --rate 200 --seconds 20 \\
        --body '{"user_id": "1", "k": 10}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np


@dataclass
class RunResult:
    offered: float  # requests per second asked for
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, from due time to full answer
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    late_starts: int = 0  # requests that waited for a connection (the server was behind)
    acknowledged_ids: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.statuses.get(200, 0) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")

    def summary(self) -> dict:
        return {"offered_rps": self.offered, "achieved_rps": round(self.throughput, 1),
                "p50_ms": round(self.percentile(50), 2), "p95_ms": round(self.percentile(95), 2),
                "p99_ms": round(self.percentile(99), 2), "max_ms": round(self.percentile(100), 2),
                "requests": self.completed, "ok": self.statuses.get(200, 0),
                "non_2xx": sum(v for k, v in self.statuses.items() if k // 100 != 2), "errors": self.errors}


def build_request(url: str, body: bytes) -> bytes:
    parsed = urlparse(url)
    return (f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, bodies, rate: float, seconds: float, max_connections: int = 256, seed: int = 0,
              ids=None) -> RunResult:
    """Offer ``rate`` requests/s for ``seconds``; ``bodies(i)`` gives request ``i``'s JSON
    bytes; ``ids(i)`` (optional) the id recorded when request ``i`` is acknowledged."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or 80
    rng = random.Random(seed)
    result = RunResult(rate, seconds)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    open_count = 0
    pending: set[asyncio.Task] = set()

    async def connect():
        nonlocal open_count
        open_count += 1
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            open_count -= 1
            return None

    async def one(i: int, due: float):
        nonlocal open_count
        reused = bool(idle)
        connection = idle.pop() if idle else None
        if connection is None:
            if open_count >= max_connections:
                result.late_starts += 1
                while not idle:
                    await asyncio.sleep(0.0005)
                connection, reused = idle.pop(), True
            else:
                connection = await connect()
        status = None
        for attempt in range(2):
            if connection is None:
                break
            reader, writer = connection
            try:
                writer.write(build_request(url, bodies(i)))
                status = await _read_response(reader)
                break
            except (OSError, asyncio.IncompleteReadError, ValueError):
                open_count -= 1
                writer.close()
                # A kept-alive connection the server closed while idle: one retry on a
                # fresh one (the server's idle timeout, not a failed request).
                connection = await connect() if reused and attempt == 0 else None
        if status is None:
            result.errors += 1
            return
        result.latencies.append(time.perf_counter() - due)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 200 and ids is not None:
            result.acknowledged_ids.extend(ids(i))
        idle.append(connection)

    start = time.perf_counter()
    due = start
    i = 0
    while True:
        due += rng.expovariate(rate)
        if due - start > seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
    if pending:
        await asyncio.wait(pending, timeout=120)
    # Throughput over the time it took to answer everything (not just the offering
    # window): a server that falls behind shows a lower rate, not the offered one.
    result.seconds = max(seconds, time.perf_counter() - start)
    for _, writer in idle:
        writer.close()
    return result


def run_sync(coroutine):
    """``asyncio.run`` on uvloop when installed: the generator then needs about half the
    CPU, which on a small machine is CPU the server keeps."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--body", required=True, help="JSON body of every request")
    args = parser.parse_args()
    body = json.dumps(json.loads(args.body)).encode()
    result = run_sync(run(args.url, lambda i: body, args.rate, args.seconds))
    print(json.dumps(result.summary(), indent=1))


if __name__ == "__main__":
    main()
