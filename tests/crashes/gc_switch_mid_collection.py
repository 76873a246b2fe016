"""greenlet 2.0.2 and 3.0.0rc1 on CPython 3.11: a segfault when the cyclic collector runs
in the middle of a switch and a ``__del__`` switches to another greenlet and back (fixed
in 3.0.0rc2: "Fix a potential crash ... when a garbage collection is triggered in the
middle of a switch", gevent issue 1985).

What greenfuzz's ``gc`` family does, by hand: the collector on with thresholds (1, 2, 2);
an object in a reference cycle whose ``__del__`` makes another such object (so one is
always waiting for the next collection) and starts a greenlet of its own that returns
at once; main switches to one greenlet and back ``N`` times (argument, default 8).
Prints "no crash" when it survives.

What it takes (measured on CPython 3.11.7 with 3.0.0rc1, 3 runs each; CPython 3.10 and
3.12 never crash): a collection at nearly every allocation (threshold 0 of 1: with
(1, 1000, 1000) too, with the default (700, 10, 10) never); garbage waiting at the
moment of the switches (a ``__del__`` that makes no new garbage: never); and a switch
*out of* a greenlet that was resumed: ``N`` = 1 (start ``worker``, it switches back)
never crashes, ``N`` = 2 (resume it, it switches back again) always does, while a
worker that returns when resumed never does.  faulthandler shows the crash in
``__del__``'s own frame ("XXX lineno: ..., opcode: ...": its instructions were
overwritten) while the collector runs.
"""

import gc
import sys

import greenlet

N = int(sys.argv[1]) if len(sys.argv) > 1 else 8
budget = [200]


def answer(token):
    return token + 1


class Cycle:
    def __init__(self):
        self.me = self

    def __del__(self):
        if budget[0] > 0:
            budget[0] -= 1
            Cycle()
        helper = greenlet.greenlet(answer, greenlet.getcurrent())
        assert helper.switch(1) == 2


def ping(*args):
    while True:
        greenlet.getcurrent().parent.switch()


gc.collect()
gc.set_threshold(1, 2, 2)
worker = greenlet.greenlet(ping)
Cycle()
for _ in range(N):
    worker.switch()
budget[0] = 0
gc.collect()
gc.disable()
print("no crash")
