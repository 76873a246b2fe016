"""A daemon thread switching between two greenlets (with GIL releases inside the greenlet
and between switches) when the interpreter exits: on greenlet 3.5.x under CPython 3.11
the process sometimes aborts ("Fatal Python error: PyInterpreterState_Delete: remaining
subinterpreters").  See docs/upstream/daemon-greenlets-abort-at-exit.md.

Usage: python daemon_greenlets_at_exit.py [switch|control]

``control`` runs the same daemon thread without switching greenlets.
"""

import sys
import threading
import time

import greenlet

SWITCH = sys.argv[1:] != ["control"]


def spin():
    def inner():
        while True:
            time.sleep(0)
            if SWITCH:
                greenlet.getcurrent().parent.switch()

    def loop():
        g = greenlet.greenlet(inner)
        while True:
            if SWITCH:
                g.switch()
            time.sleep(0)

    greenlet.greenlet(loop).switch()


threading.Thread(target=spin, daemon=True).start()
time.sleep(0.01)
