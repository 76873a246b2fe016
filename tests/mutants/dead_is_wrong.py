"""Defect: ``dead`` is True for greenlets that have not started yet."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    @property
    def dead(self):
        return not self  # wrong: an unstarted greenlet is false but not dead
