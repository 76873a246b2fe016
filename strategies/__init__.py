"""Hypothesis strategies that build greenfuzz programs (see ``strategies.switch_graphs``)."""

from harness.ir import FAMILIES
from strategies.data import arguments, exceptions, values
from strategies.switch_graphs import SHAPES, ops, programs, recursions, scripts

__all__ = ["FAMILIES", "SHAPES", "arguments", "exceptions", "ops", "programs", "recursions",
           "scripts", "values"]
