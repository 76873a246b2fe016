"""A daemon thread switching between two greenlets (with GIL releases inside the greenlet
and between switches) when the interpreter exits: on greenlet 3.5.x under CPython 3.11
the process sometimes aborts ("Fatal Python error: PyInterpreterState_Delete: remaining
subinterpreters").  See docs/upstream/daemon-greenlets-abort-at-exit.md.

Usage: python daemon_greenlets_at_exit.py [switch|control] [THREADS] [OBJECTS]

``control`` runs the same daemon thread without switching greenlets; ``THREADS``
(default 1) such threads run side by side; ``OBJECTS`` (default 0) small objects held by
a module global are freed while the interpreter finalizes (so that finalization takes a
while, as in greenfuzz's reproducers, whose module holds the harness).
"""

import sys
import threading
import time

import greenlet

SWITCH = sys.argv[1:2] != ["control"]
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
OBJECTS = int(sys.argv[3]) if len(sys.argv) > 3 else 0


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


for _ in range(THREADS):
    threading.Thread(target=spin, daemon=True).start()
time.sleep(0.01)
held = [{"item": [i]} for i in range(OBJECTS)]
