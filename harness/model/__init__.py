"""The reference model: what a correct greenlet implementation does with a program.

Pure Python, no greenlet import.  ``predict(program)`` returns the exact trace the
runner must observe: every ``start``, every value ``switch()``/``throw()`` returns, every
exception caught or fatal, every attribute read, and every ``GreenletExit`` delivered by
reference counting, in order.  The core (``core.py``) counts references, switches and
steps on the greenlet objects of ``state.py``; what each op does is its family's rule
(``greenfuzz.harness.families``).

Each rule cites greenlet's documentation (https://greenlet.readthedocs.io, pages
``switching``, ``creating_executing_greenlets``, ``greenlet_gc``, ``api``); where the
documentation is silent or wrong, the rule says what greenlet 3.x does and the
differential test (``tests/test_model_vs_greenlet.py``) keeps it honest.
"""

from greenfuzz.harness.families.deliveries import ModelError, State, Unsupported
from greenfuzz.harness.model.core import CORE_RULES, Model, predict, rules
from greenfuzz.harness.model.liveness import explain_alive, holders
from greenfuzz.harness.model.state import MG

__all__ = ["CORE_RULES", "MG", "Model", "ModelError", "State", "Unsupported", "explain_alive",
           "holders", "predict", "rules"]
