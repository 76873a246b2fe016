"""A greenlet that kills another (``del``) while the collector runs a finalizer that
switches to a greenlet of its own, then calls a function and switches out: on CPython
3.11 its ``gr_frame`` is the finalizer's ``__del__`` frame, not the function it is
suspended in (greenlet 2.0.2 to 3.5.6; greenlet 1.1.3 segfaults).  CPython 3.9, 3.10,
3.12 and 3.13 give the right frame.

Usage: python kill_beside_finalizer_frame.py   (exit 1 and "FAIL ..." where it is wrong)

Written by hand from greenfuzz's finding mismatch-efb0b615fe (the eighth session's deep
campaign, seed 2030; ``kill_beside_finalizer_frame.json``).  See
docs/upstream/gc-self-switch-stale-frame.md: the same frame, left stale, is what the
segfaults and the bad bytecode of that page read.
"""

import gc

import greenlet

main = greenlet.getcurrent()


class Finalized:
    """Cyclic garbage whose finalizer switches to a greenlet of its own and back."""

    def __init__(self):
        self.cycle = self

    def __del__(self):
        greenlet.greenlet(lambda x: x + 1).switch(1)


def run_g1():
    main.switch()


def run_g2():
    gc.collect()
    gc.set_threshold(1, 2, 2)  # a collection at nearly every allocation
    gc.enable()
    Finalized()
    main.switch()


def run_g3():
    global g1
    del g1  # g1 is suspended: greenlet kills it here, and the collector runs
    inner()


def inner():
    main.switch()


g3 = greenlet.greenlet(run_g3)
g2 = greenlet.greenlet(run_g2)
g1 = greenlet.greenlet(run_g1)
g1.switch()
g2.switch()
g3.switch()
names = []
frame = g3.gr_frame
while frame is not None:
    names.append(frame.f_code.co_name)
    frame = frame.f_back
print("g3 is suspended in:", names)
if names[:2] != ["inner", "run_g3"]:
    print("FAIL: g3 is suspended in inner(), called by run_g3()")
    raise SystemExit(1)
print("OK")
