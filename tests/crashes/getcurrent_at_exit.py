"""``greenlet.getcurrent()`` while the interpreter exits, as greenfuzz's ``shutdown``
family found it on old releases (docs/families.md, "Releases x shutdown").

Usage: python getcurrent_at_exit.py atexit|finalizing

``atexit``: a callback registered *before* greenlet is imported (so it runs after
greenlet's own ``atexit`` callback) calls ``getcurrent()``.  greenlet 3.5.0's changelog:
greenlet APIs "remain available while all atexit callbacks run"; greenlet 3.4.0 returns
None there (prints ``atexit: None``), other releases the main greenlet.

``finalizing``: an object held by a module global, whose ``__del__`` runs while
``__main__`` is cleared at finalization, calls ``getcurrent()``.  The api docs:
it "Returns the current greenlet"; 3.5.1's changelog: it raises ``RuntimeError`` once
the interpreter is finalizing.  greenlet 3.4.0 and 3.5.0 return None (prints
``finalizing: None``); up to 3.3.x the main greenlet; from 3.5.1 ``RuntimeError``.

Each prints one line with what ``getcurrent()`` gave (``os.write``: ``sys.stdout`` may
be gone by then) and exits 0.
"""

import atexit
import os
import sys

MODE = sys.argv[1] if len(sys.argv) > 1 else "atexit"


def report(where, module=None):
    if module is None:
        import greenlet as module  # in an atexit callback imports still work

    try:
        what = module.getcurrent()
        text = "None" if what is None else type(what).__name__
    except BaseException as e:
        text = "raised %s" % type(e).__name__
    os.write(1, ("%s: %s\n" % (where, text)).encode())


if MODE == "atexit":
    atexit.register(report, "atexit")

import greenlet  # noqa: E402 - after the callback above, on purpose


class Finalized:
    def __del__(self, report=report, module=greenlet):  # no imports at finalization
        report("finalizing", module)


greenlet.greenlet(lambda: None).switch()  # greenlet has run in this thread
if MODE == "finalizing":
    held = Finalized()
