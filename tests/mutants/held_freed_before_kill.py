"""Defect: when a suspended greenlet is collected, its ``__dict__`` is cleared before
``GreenletExit`` is delivered (as if deallocation cleared the instance dict first), so
the objects it holds are finalized too early: before its exit ran, and so before
finalizers registered through weak references, which CPython runs first."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "finalizers"


class greenlet(_real.greenlet):
    def __del__(self):
        if self:  # started and not dead: greenlet is about to kill it
            self.__dict__.clear()
