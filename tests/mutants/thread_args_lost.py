"""Defect: while three or more threads run, a switch drops its arguments (the target
receives ``()``): a race that single-threaded programs never see."""

import threading

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILIES = ("core", "concurrent")


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        if threading.active_count() >= 3 and (args or kwargs):
            args, kwargs = (), {}
        try:
            return _real.greenlet.switch(self, *args, **kwargs)
        finally:
            # This frame must not keep the greenlets alive once the switch is over
            # (a traceback through it would): only the defect above may differ.
            del self, args, kwargs
