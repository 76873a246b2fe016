"""Fuzz the implementation chosen with ``pytest --impl`` (default: the installed greenlet).

This is the campaign as a test: under ``pytest -n auto`` every worker draws its own
programs; a failure is shrunk by Hypothesis and reported with the divergence.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from harness.campaign import CampaignConfig, judge, open_executor
from harness.ir import Program
from strategies import programs


@pytest.fixture(scope="module")
def isolated(impl):
    config = CampaignConfig(impl=impl, out=Path("."), isolate=True, timeout=5.0)
    executor = open_executor(config)
    yield config, executor
    executor.close()


@given(program=programs())
def test_implementation_agrees_with_model(isolated, program: Program) -> None:
    config, executor = isolated
    finding = judge(program, config, executor)
    assert finding.verdict.ok, finding.report()
