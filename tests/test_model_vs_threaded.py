"""The model against the thread-based reference implementation (``harness/threaded_greenlet``).

A second, independent implementation checks the model from another side: where the
model and real greenlet agree only by accident, the threaded one is likely to differ.
"""

from __future__ import annotations

from hypothesis import given, settings

from harness import checks, implementations, model, runner
from harness.ir import Program
from strategies import programs

THREADED = implementations.load("harness.threaded_greenlet")


@settings(max_examples=max(20, settings.default.max_examples // 2))
@given(programs())
def test_threaded_reference_agrees_with_model(program: Program) -> None:
    expected = model.predict(program)
    observation = runner.run_inprocess(program, THREADED)
    verdict = checks.compare(program, expected, observation)
    assert verdict.ok, verdict.summary
