"""Defect: ``throw(T, value)`` raises ``T()``, losing the value."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
#: Drawn from these families only: with all of them, the first failing program is at
#: times one where the dropped value decides how a finally block and the teardown
#: interleave, which shrinks to no fewer than 12 ops.
FAMILIES = ("core", "exceptions")


class greenlet(_real.greenlet):
    def throw(self, typ=GreenletExit, val=None, tb=None):
        return super().throw(typ)  # the value (and traceback) are dropped
