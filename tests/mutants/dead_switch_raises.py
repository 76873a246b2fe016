"""Defect: switching to a dead greenlet raises ``greenlet.error`` instead of going to
its parent."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if self.dead:
            raise error("cannot switch to a dead greenlet")
        return super().switch(*args, **kwargs)
