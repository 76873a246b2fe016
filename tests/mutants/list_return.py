"""Defect: several switch arguments arrive as a list instead of a tuple."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        result = super().switch(*args, **kwargs)
        return list(result) if type(result) is tuple and len(result) > 1 else result
