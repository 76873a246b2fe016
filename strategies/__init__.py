"""Hypothesis strategies that build greenfuzz programs (see ``strategies.switch_graphs``)."""

from strategies.data import arguments, exceptions, values
from strategies.switch_graphs import ops, programs, scripts

__all__ = ["arguments", "exceptions", "ops", "programs", "scripts", "values"]
