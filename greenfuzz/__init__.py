"""greenfuzz: stress-testing and fuzzing for implementations of the greenlet API.

The distribution installs this one package.  Its sub-packages live in the repository's
top-level folders (``pyproject.toml`` maps them): ``greenfuzz.harness`` is ``harness/``
(the engine, one sub-package per pipeline stage) and ``greenfuzz.strategies`` is
``strategies/`` (the Hypothesis strategies that draw programs).
"""

__version__ = "0.2.0"
