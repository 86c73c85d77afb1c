"""Shared test set-up: offline, a private artifact cache per session, and the real benchmark data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's cache; tests that want a fresh one set FR_BENCH_CACHE themselves."""
    if "FR_BENCH_TEST_CACHE" in os.environ:
        os.environ["FR_BENCH_CACHE"] = os.environ["FR_BENCH_TEST_CACHE"]
    else:
        os.environ["FR_BENCH_CACHE"] = str(tmp_path_factory.mktemp("fr_bench_cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"benchmark data folder {SHARED_DATA} is missing; tests need ../shared/data beside the repo")
    return SHARED_DATA
