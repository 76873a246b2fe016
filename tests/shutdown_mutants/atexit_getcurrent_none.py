"""Defect (greenlet 3.4.0's): an atexit callback of the implementation's own, registered
as it is imported, ends greenlet's thread state; ``getcurrent()`` then returns None, so
callbacks registered before the import (which run after it) see None."""

import atexit

import greenlet as _real
from greenlet import GreenletExit, error, greenlet  # noqa: F401

KIND = "mismatch"
FAMILIES = ("core", "shutdown")

_gone = []
atexit.register(lambda: _gone.append(True))


def getcurrent():
    return None if _gone else _real.getcurrent()
