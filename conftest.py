"""This repository's own test configuration.

The options, Hypothesis settings profiles and the shared example database come from
greenfuzz's pytest plugin (``greenfuzz.harness.extra.pytest_plugin``, loaded through its
entry point like in any user's project); helpers several test modules use live in
``tests/helpers.py`` (``run_cli``, ``agreed``, ``prog``, the loaded ``GREENLET``), and the
fixtures below hand them to tests that prefer fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

# ``greenfuzz fuzz`` runs a job per core by default; the tests run it in pytest-xdist
# workers that already share the cores, so one job each unless a test asks for more
# (every greenfuzz the tests start inherits this).
os.environ.setdefault("GREENFUZZ_JOBS", "1")


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty greenfuzz cache (``GREENFUZZ_CACHE``) for this test: environments made
    here are not reused by, nor taken from, other tests."""
    cache = tmp_path / "greenfuzz-cache"
    monkeypatch.setenv("GREENFUZZ_CACHE", str(cache))
    return cache


@pytest.fixture
def cli() -> Callable:
    """``run_cli``: ``python -m greenfuzz ARGS`` in a fresh process, with a time limit."""
    from tests.helpers import run_cli

    return run_cli


def pytest_collection_modifyitems(items: list) -> None:
    """The tests that run an emulated CPU go last (in collection order otherwise): their
    root filesystem takes minutes to build the first time, and ``.ci/run`` builds it in
    the background while the rest of the suite runs, so they find it built."""
    items.sort(key=lambda item: item.get_closest_marker("qemu") is not None)
