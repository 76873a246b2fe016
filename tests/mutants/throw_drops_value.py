"""Defect: ``throw(T, value)`` raises ``T()``, losing the value."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def throw(self, typ=GreenletExit, val=None, tb=None):
        return super().throw(typ)  # the value (and traceback) are dropped
