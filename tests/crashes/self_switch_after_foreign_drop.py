"""greenlet 2.0.0-3.5.6: ``switch()`` to the current greenlet fails when it is the first
greenlet call a thread makes after another thread dropped the last reference to one of
its suspended greenlets.

Found by greenfuzz's ``concurrent`` family (docs/upstream/self-switch-after-foreign-drop.md).
The worker thread parks a greenlet, lets the main thread drop it, then calls
``current.switch(1, 2)`` on a greenlet object it took earlier.  The switching docs say a
switch to the current greenlet returns its arguments; here greenlet first kills the
dropped greenlet (its "deleteme" list) inside that call and the call then fails:
``greenlet.error: Greenlet.switch() returned NULL without an exception set.`` (3.0.0rc2
and later) or ``SystemError: ... returned NULL without setting an exception`` (2.0.x).

Argument ``dead`` switches instead to a greenlet that has ended in this thread, whose
parent is the current greenlet: the switching docs say such a switch "actually goes to
the dead greenlet's parent", so it too is a switch to oneself, and it fails the same way
(the gc family's finalizers reach the bug there, found in greenfuzz's own test of plain
files mixing garbage and threads).

Prints what the call did; exit status 1 when it did not return ``(1, 2)``.  Argument
``getcurrent`` calls ``greenlet.getcurrent()`` first (the control: it then works).
"""

import sys
import threading

import greenlet

ready = threading.Event()
dropped = threading.Event()
box = []
outcome = []


def body():
    def parked():
        try:
            greenlet.getcurrent().parent.switch()
        except greenlet.GreenletExit:
            outcome.append(("GreenletExit in its own thread", threading.current_thread() is me))
            raise

    me = threading.current_thread()
    g = greenlet.greenlet(parked)
    g.switch()
    box.append(g)
    del g
    current = greenlet.getcurrent()
    if "dead" in sys.argv[1:]:
        current = greenlet.greenlet(lambda: None)
        current.switch()  # dead now; its parent is this thread's main greenlet
    ready.set()
    dropped.wait(10)
    if "getcurrent" in sys.argv[1:]:
        greenlet.getcurrent()
    try:
        outcome.append(("returned", current.switch(1, 2)))
    except Exception as e:
        outcome.append(("raised", "%s: %s" % (type(e).__name__, e)))


thread = threading.Thread(target=body)
thread.start()
ready.wait(10)
box.clear()  # the last reference to the parked greenlet goes here, in the main thread
dropped.set()
thread.join(10)
print(outcome)
sys.exit(0 if ("returned", (1, 2)) in outcome else 1)
