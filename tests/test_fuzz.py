"""Fuzz the implementation chosen with ``pytest --impl`` (default: the installed greenlet).

This is the campaign as a test: under ``pytest -n auto`` every worker draws its own
programs (its own seed: see ``conftest.py``); a failure is shrunk by Hypothesis, reported
with the divergence, and written to the shared findings folder (``--findings``) as the
usual ``<id>.json`` and ``<id>.py`` (the minimal example).  The test is split into
``GREENFUZZ_SHARDS`` (default 2) independent campaigns so that every worker fuzzes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import pytest
from hypothesis import given, seed

from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.reporting.findings import Finding, atomic_write
from greenfuzz.harness.search.campaign import CampaignConfig, judge, open_executor
from greenfuzz.strategies import programs


@pytest.fixture(scope="module")
def isolated(impl):
    config = CampaignConfig(impl=impl, out=Path("."), isolate=True, timeout=5.0)
    executor = open_executor(config)
    yield config, executor
    executor.close()


#: Independent campaigns, so that ``pytest -n auto`` keeps every worker fuzzing.
SHARDS = int(os.environ.get("GREENFUZZ_SHARDS", "2"))


@pytest.mark.parametrize("shard", range(SHARDS))
def test_implementation_agrees_with_model(isolated, findings_dir: Path,
                                          worker_seed: Optional[int], shard: int) -> None:
    config, executor = isolated
    failed: List[Finding] = []

    @given(program=programs())
    def check(program: Program) -> None:
        finding = judge(program, config, executor)
        if not finding.verdict.ok:
            failed.append(finding)
        assert finding.verdict.ok, finding.report()

    if worker_seed is not None:
        check = seed(worker_seed * 1000 + shard)(check)
    try:
        check()
    except AssertionError:
        # Hypothesis runs the minimal example last: that is the one kept.
        finding = failed[-1]
        findings_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(findings_dir / f"{finding.id}.json",
                     json.dumps(finding.to_json(), indent=1) + "\n")
        atomic_write(findings_dir / f"{finding.id}.py", finding.reproducer())
        raise
