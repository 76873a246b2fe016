"""Fuzz the implementation chosen with ``pytest --greenfuzz-impl X`` (default greenlet).

The campaign as a test, through the pytest plugin like any other project would use it
(``greenfuzz.harness.extra.pytest_plugin``): a module-level ``@given`` test, split into
``GREENFUZZ_SHARDS`` (default 2) shards so that ``pytest -n auto`` keeps every worker
fuzzing, whose failures Hypothesis's database replays first and which HypoFuzz collects
(``hypothesis fuzz -- tests/test_fuzz.py``).  A failure is shrunk by Hypothesis and its
smallest example written to ``--greenfuzz-findings`` (default
``greenfuzz-findings/pytest``) as the usual ``<id>.json`` and ``<id>.py``.
"""

from greenfuzz.harness.extra.pytest_plugin import fuzz_test

test_implementation_agrees_with_model = fuzz_test()
