"""Fuzz the implementation chosen with ``pytest --impl`` (default: the installed greenlet).

This is the campaign as a test: under ``pytest -n auto`` every worker draws its own
programs; a failure is shrunk by Hypothesis and reported with the divergence.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given

from harness.campaign import CampaignConfig, judge
from harness.ir import Program
from strategies import programs


@given(programs())
def test_implementation_agrees_with_model(impl, program: Program) -> None:
    config = CampaignConfig(impl=impl, out=Path("."), isolate=True, timeout=5.0)
    finding = judge(program, config)
    assert finding.verdict.ok, finding.report()
