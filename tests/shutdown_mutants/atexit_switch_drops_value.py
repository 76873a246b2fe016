"""Defect: once the implementation's own atexit callback ran, ``switch()`` delivers no
arguments: the greenlet switched to gets None (callbacks registered before the import
run after it)."""

import atexit

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent  # noqa: F401

KIND = "mismatch"
FAMILIES = ("core", "shutdown")

_exiting = []
atexit.register(lambda: _exiting.append(True))


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if _exiting:
            args, kwargs = (), {}
        return super().switch(*args, **kwargs)
