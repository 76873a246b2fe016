"""Defect: ``switch()`` with exactly three positional arguments dereferences NULL."""

import ctypes

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "crash"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if len(args) == 3:
            ctypes.string_at(0)
        return super().switch(*args, **kwargs)
