"""Defect: a started greenlet accepts a parent from another thread without complaint: the
``ValueError("parent cannot be on a different thread")`` greenlet raises is swallowed and
the parent stays as it was (as if the check were missing and the assignment lost)."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "threads"

_parent = _real.greenlet.parent


class greenlet(_real.greenlet):
    @property
    def parent(self):
        return _parent.__get__(self)

    @parent.setter
    def parent(self, value):
        try:
            _parent.__set__(self, value)
        except ValueError as e:
            if "different thread" not in str(e):
                raise
