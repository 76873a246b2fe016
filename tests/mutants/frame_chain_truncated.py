"""Defect: ``gr_frame`` of a suspended greenlet is one frame too far down the stack (the
frame that called ``switch()`` is missing from the chain; a greenlet suspended in its
``run`` reports None)."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "frames"


class greenlet(_real.greenlet):
    @property
    def gr_frame(self):
        frame = _real.greenlet.gr_frame.__get__(self)
        return None if frame is None else frame.f_back
