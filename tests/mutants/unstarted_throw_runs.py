"""Defect: ``throw()`` into a greenlet that has not started runs it first (up to its
first switch) and only then raises, instead of killing it without running ``run``."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def throw(self, *args):
        if not self and not self.dead:
            self.switch()
        return super().throw(*args)
