"""Defect: ``throw()`` into a suspended greenlet never returns."""

import time

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "hang"


class greenlet(_real.greenlet):
    def throw(self, *args):
        if self and self is not _real.getcurrent():
            while True:
                time.sleep(0.05)
        return super().throw(*args)
