"""Shared fixtures. Real datasets are found through RECLOOP_DATA_DIR (default
``../shared/datasets`` beside the repository); tests that need one skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recloop.data import SyntheticConfig, generate

DATA_DIR = Path(os.environ.get("RECLOOP_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


REQUIRE_DATA = os.environ.get("RECLOOP_REQUIRE_DATA") == "1"  # CI: missing data fails instead of skipping


def missing(reason: str) -> None:
    if REQUIRE_DATA:
        pytest.fail(reason + " and RECLOOP_REQUIRE_DATA=1")
    pytest.skip(reason)


def dataset_path(name: str) -> Path:
    path = DATA_DIR / name
    if not path.exists():
        missing(f"dataset {name} not found under {DATA_DIR} (set RECLOOP_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.exists():
        missing(f"no dataset directory at {DATA_DIR} (set RECLOOP_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def ml100k(data_dir):
    from recloop.data import load_dataset

    dataset_path("ml-100k")
    return load_dataset("ml-100k", data_dir=data_dir, download=False)


@pytest.fixture(scope="session")
def synthetic():
    """Small synthetic data with planted clusters and sequences."""
    return generate(SyntheticConfig(n_users=300, n_items=120, n_clusters=6, mean_interactions=15, seed=1))
