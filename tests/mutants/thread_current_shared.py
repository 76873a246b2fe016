"""Defect: ``getcurrent()`` keeps the current greenlet in one process-wide slot: called
outside the main thread, it may answer with the greenlet another thread asked for last."""

import threading

import greenlet as _real
from greenlet import GreenletExit, error

KIND = "mismatch"
FAMILIES = ("core", "concurrent")

_slot = [None]


def getcurrent():
    mine = _real.getcurrent()
    last, _slot[0] = _slot[0], mine
    if threading.current_thread() is not threading.main_thread() and last is not None \
            and not last.dead:
        return last
    return mine


class greenlet(_real.greenlet):
    pass
