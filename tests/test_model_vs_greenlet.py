"""The differential test: the model agrees with the real greenlet on generated programs.

Any disagreement is either a model bug (fix the model) or a greenlet bug (document it
with evidence and teach the model the documented behaviour).  Each test multiplies the
profile's example count, so the ``ci`` profile runs thousands of programs in total.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from greenfuzz.harness.program.ir import Program
from greenfuzz.strategies import programs
from tests.helpers import agreed

SCALE = 2


def agree(program: Program) -> None:
    """Programs that end at exit run in a fresh interpreter, and greenlet's documented
    bugs are accepted where its bundled data names them (``tests.helpers.agreed``)."""
    agreed(program)


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
