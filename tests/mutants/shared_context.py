"""Defect: greenlets share one ``contextvars`` context: every ``switch()`` hands the
switching greenlet's context to the greenlet switched to, so a value set in one is seen
in the other (greenlet gives each greenlet its own)."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "contextvars"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        try:
            self.gr_context = _real.getcurrent().gr_context
        except (TypeError, ValueError):
            pass
        return super().switch(*args, **kwargs)
