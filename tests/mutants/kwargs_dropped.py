"""Defect: with both positional and keyword arguments, the keywords are lost."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if args and kwargs:
            kwargs = {}
        return super().switch(*args, **kwargs)
