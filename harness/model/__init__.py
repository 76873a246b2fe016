"""The reference model: predicts a program's events without importing greenlet.  The
core (``core.py``) counts references, switches and steps; what each op does is its
family's rule (``greenfuzz.harness.families``)."""

from greenfuzz.harness.families.deliveries import ModelError, Unsupported
from greenfuzz.harness.model.core import MG, Model, State, explain_alive, predict

__all__ = ["MG", "Model", "ModelError", "State", "Unsupported", "explain_alive", "predict"]
