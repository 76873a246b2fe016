"""pytest configuration: the ``--impl`` option, Hypothesis profiles, the shared database.

Profiles (``--hypothesis-profile NAME``): ``dev`` for quick local runs (the default),
``ci`` for the CI run (more examples, no deadline; chosen automatically when ``CI`` is
set), ``deep`` for long campaigns on demand.

Under ``pytest -n auto`` every pytest-xdist worker fuzzes with its own seed (derived from
``--hypothesis-seed`` when given, so a run is reproducible and no two workers repeat each
other) and all of them share one example database and one findings folder.  The database
is Hypothesis's default ``.hypothesis/`` unless ``GREENFUZZ_DATABASE`` names another
directory (for instance on a filesystem several machines share) or a Redis server
(``redis://host:port``, needs the ``redis`` package): that is how a campaign spreads over
machines, with pytest-xdist's remote workers or HypoFuzz.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase


def _database() -> ExampleDatabase | None:
    where = os.environ.get("GREENFUZZ_DATABASE")
    if not where:
        return None
    if where.startswith("redis://"):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(redis.Redis.from_url(where))
    return DirectoryBasedExampleDatabase(where)


_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
if _database() is not None:
    _COMMON["database"] = _database()
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("ci", max_examples=400, print_blob=True, **_COMMON)
settings.register_profile("deep", max_examples=20_000, **_COMMON)
settings.load_profile(os.environ.get("GREENFUZZ_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl", default="greenlet",
        help="greenlet implementation the fuzz tests run against (module or .py path)",
    )
    parser.addoption(
        "--findings", default="greenfuzz-findings/pytest", type=Path,
        help="folder the fuzz tests write their findings to (shared by all workers)",
    )


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest):
    from greenfuzz.harness.execution import implementations

    return implementations.load(request.config.getoption("--impl"))


@pytest.fixture(scope="session")
def findings_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.getoption("--findings"))


@pytest.fixture(scope="session")
def worker_seed(request: pytest.FixtureRequest) -> int | None:
    """This worker's seed: ``--hypothesis-seed`` plus the xdist worker number (gw0, gw1,
    ...), or None (Hypothesis then picks a random one per run)."""
    base = request.config.getoption("hypothesis_seed", None)
    if base is None:
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(base) + int(worker.lstrip("gw") or 0)
