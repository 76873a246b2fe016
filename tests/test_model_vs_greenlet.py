"""The differential test: the model agrees with the real greenlet on generated programs.

Any disagreement is either a model bug (fix the model) or a greenlet bug (document it
with evidence and teach the model the documented behaviour).  Each test multiplies the
profile's example count, so the ``ci`` profile runs thousands of programs in total.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from greenfuzz.harness import model
from greenfuzz.harness.execution import runner
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import Program
from greenfuzz.strategies import programs
from tests.helpers import GREENLET

SCALE = 2


def agree(program: Program) -> None:
    expected = model.predict(program)
    observation = runner.run_inprocess(program, GREENLET)
    verdict = checks.compare(program, expected, observation)
    assert verdict.ok, verdict.summary + "\n" + "\n".join(
        checks.context_lines(expected, observation.trace, verdict.index or 0))


@settings(max_examples=settings.default.max_examples * SCALE)
@given(programs(max_greenlets=4))
def test_small_programs(program: Program) -> None:
    agree(program)


@pytest.mark.slow
@settings(max_examples=settings.default.max_examples * SCALE)
@given(programs(min_greenlets=5, max_greenlets=12, max_ops=8))
def test_larger_programs(program: Program) -> None:
    agree(program)


@pytest.mark.slow
@settings(max_examples=max(10, settings.default.max_examples // 8))
@given(programs(min_greenlets=40, max_greenlets=120, max_ops=4))
def test_programs_with_many_greenlets(program: Program) -> None:
    agree(program)
