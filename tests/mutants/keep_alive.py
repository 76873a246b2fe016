"""Defect: every greenlet stays alive for ever (a module-level list keeps each one), so
dropping the program's last reference frees nothing; unstarted and finished greenlets
show it without any difference in the trace."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "leak"
_KEEP = []


class greenlet(_real.greenlet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _KEEP.append(self)
