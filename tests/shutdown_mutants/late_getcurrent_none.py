"""Defect (greenlet 3.4.0 and 3.5.0's): once the interpreter is finalizing,
``getcurrent()`` returns None instead of a greenlet or ``RuntimeError`` (3.5.1)."""

import sys

import greenlet as _real
from greenlet import GreenletExit, error, greenlet  # noqa: F401

KIND = "mismatch"
FAMILIES = ("core", "shutdown")


def getcurrent(_finalizing=sys.is_finalizing, _real_getcurrent=_real.getcurrent):
    return None if _finalizing() else _real_getcurrent()
