"""Defect (the shape of greenlet 2.0.x's on CPython 3.11): the process dies of SIGSEGV
at exit when a thread other than the main one ever ran a greenlet."""

import atexit
import os
import signal
import threading

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent  # noqa: F401

KIND = "crash"
FAMILIES = ("core", "shutdown")

_main = threading.main_thread().ident
_other = []


class greenlet(_real.greenlet):
    def __init__(self, *args, **kwargs):
        if threading.get_ident() != _main:
            _other.append(True)
        super().__init__(*args, **kwargs)


def _crash():
    if _other:
        os.kill(os.getpid(), signal.SIGSEGV)


atexit.register(_crash)
