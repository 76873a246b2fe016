"""Defect: every greenlet that starts leaks 256 KiB of plain C memory (malloc'd, written,
never freed); no greenlet object is kept, so traces and liveness are right and only the
raw-memory check can see it."""

import ctypes

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "leak"
_SIZE = 256 * 1024
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


def _leak():
    block = _libc.malloc(_SIZE)
    if block:
        ctypes.memset(block, 1, _SIZE)  # resident, not just reserved


class greenlet(_real.greenlet):
    def __init__(self, run=None, *args, **kwargs):
        if run is not None:
            inner = run

            def run(*a, **k):
                _leak()
                return inner(*a, **k)

        super().__init__(run, *args, **kwargs)
