"""Defect: greenlets are never collected (a module-level list keeps every one), so
dropping a suspended greenlet never delivers ``GreenletExit``."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
_KEEP = []


class greenlet(_real.greenlet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _KEEP.append(self)
