"""Helpers shared by the serving tests (imported by conftest and test modules)."""

from __future__ import annotations


def fast_service(settings):
    """A RecommendationService that embeds new items' text with :func:`hashing_embedder`
    (no language model to load)."""
    from recloop.serve.service import RecommendationService

    return RecommendationService(settings, embedder_factory=lambda: hashing_embedder)


def hashing_embedder(texts, dim: int = 64):
    """A fast, deterministic stand-in for the language model: bag of hashed words.
    Texts sharing words get similar vectors, which is all the cold-start logic needs."""
    import zlib

    import numpy as np

    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in str(text).lower().replace(".", " ").replace(",", " ").split():
            out[row, zlib.crc32(word.encode()) % dim] += 1.0
    return out


ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def start_server(artifact, db, port: int, *args: str, log_path=None):
    """Start ``recloop serve`` as a real process (its own session, so a kill reaches
    every worker); returns the Popen. Stop it with :func:`stop_server`."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the server writes it
    return subprocess.Popen([sys.executable, "-m", "recloop", "serve", str(artifact), "--port", str(port),
                             "--db", str(db), "--log-level", "warning", *args],
                            stdout=log, stderr=log, env=env, start_new_session=True)


def wait_healthy(process, url: str, timeout: float = 120.0) -> dict:
    """Poll ``url/health`` until it answers; fail early if the process died."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before answering")
        try:
            answer = httpx.get(url + "/health", timeout=2.0)
            if answer.status_code == 200:
                return answer.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no answer from {url}/health in {timeout:.0f}s")


def stop_server(process, sig=None) -> None:
    """Signal the server's whole process group (default SIGTERM) and reap it."""
    import os
    import signal
    import subprocess

    if process.poll() is None:
        try:
            os.killpg(process.pid, sig or signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(reason: str) -> None:
    """Skip, or fail in CI (``RECLOOP_REQUIRE_DATA=1``), like the root conftest."""
    import os

    import pytest

    if os.environ.get("RECLOOP_REQUIRE_DATA") == "1":
        pytest.fail(reason + " and RECLOOP_REQUIRE_DATA=1")
    pytest.skip(reason)
