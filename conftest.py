"""pytest configuration: the ``--impl`` option and Hypothesis profiles.

Profiles (``--hypothesis-profile NAME``): ``dev`` for quick local runs (the default),
``ci`` for the CI run (more examples, no deadline; chosen automatically when ``CI`` is
set), ``deep`` for long campaigns on demand.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("ci", max_examples=400, print_blob=True, **_COMMON)
settings.register_profile("deep", max_examples=20_000, **_COMMON)
settings.load_profile(os.environ.get("GREENFUZZ_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl", default="greenlet",
        help="greenlet implementation the fuzz tests run against (module or .py path)",
    )


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest):
    from harness import implementations

    return implementations.load(request.config.getoption("--impl"))
