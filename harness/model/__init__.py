"""The reference model: predicts a program's events without importing greenlet."""

from greenfuzz.harness.model.reference import (
    Model,
    ModelError,
    Unsupported,
    explain_alive,
    predict,
)

__all__ = ["Model", "ModelError", "Unsupported", "explain_alive", "predict"]
