"""Hypothesis strategies that build greenfuzz programs (see
``greenfuzz.strategies.switch_graphs``)."""

from greenfuzz.harness.families.values import arguments, exceptions, values
from greenfuzz.harness.program.ir import FAMILIES
from greenfuzz.strategies.switch_graphs import GRAPH_SHAPES, ops, programs, recursions, scripts

__all__ = ["FAMILIES", "GRAPH_SHAPES", "arguments", "exceptions", "ops", "programs", "recursions",
           "scripts", "values"]
