"""Defect: a greenlet created without a parent gets the main greenlet as parent, not
the greenlet that created it."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"


def _main():
    g = _real.getcurrent()
    while g.parent is not None:
        g = g.parent
    return g


class greenlet(_real.greenlet):
    def __init__(self, run=None, parent=None):
        super().__init__(run, parent if parent is not None else _main())
