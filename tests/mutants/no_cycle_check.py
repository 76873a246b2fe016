"""Defect: a parent assignment that would make a cycle is silently ignored instead of
raising ``ValueError``."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


class greenlet(_real.greenlet):
    @property
    def parent(self):
        return _real.greenlet.parent.__get__(self)

    @parent.setter
    def parent(self, value):
        try:
            _real.greenlet.parent.__set__(self, value)
        except ValueError:
            pass
