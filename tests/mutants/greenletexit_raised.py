"""Defect: a greenlet killed by GreenletExit makes its parent's ``switch()`` raise it
instead of returning the exception object."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        result = super().switch(*args, **kwargs)
        if isinstance(result, GreenletExit):
            raise result
        return result
