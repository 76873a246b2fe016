"""Defect: ``throw()`` into a suspended greenlet never returns."""

import time

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "hang"
#: Drawn from these families only: with all of them, the first hanging program is at
#: times one that shrinks to no fewer than 10 ops within the time limits of shrinking.
FAMILIES = ("core", "exceptions")


class greenlet(_real.greenlet):
    def throw(self, *args):
        if self and self is not _real.getcurrent():
            while True:
                time.sleep(0.05)
        return super().throw(*args)
