"""Defect: ``switch()`` with no arguments delivers None, as greenlet's docstring
(wrongly) says, instead of ``()``."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        result = super().switch(*args, **kwargs)
        return None if result == () else result
