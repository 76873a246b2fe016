"""Hypothesis strategies that build greenfuzz programs (see ``strategies.switch_graphs``)."""

from strategies.data import arguments, exceptions, values
from strategies.switch_graphs import SHAPES, ops, programs, scripts

__all__ = ["SHAPES", "arguments", "exceptions", "ops", "programs", "scripts", "values"]
