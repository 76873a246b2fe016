"""Defect: switching to (or throwing into) a greenlet of another thread raises
``RuntimeError`` instead of ``greenlet.error``."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "threads"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        try:
            return super().switch(*args, **kwargs)
        except error as e:
            raise RuntimeError(*e.args) from None

    def throw(self, *args):
        try:
            return super().throw(*args)
        except error as e:
            raise RuntimeError(*e.args) from None
