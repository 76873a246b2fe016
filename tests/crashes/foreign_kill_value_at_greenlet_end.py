"""greenlet 2.0.2-3.5.6: a greenlet that ends while its thread owes a kill (a greenlet of
that thread dropped in another thread) hands its parent the killed greenlet's
``GreenletExit`` instead of its own return value.

Found by greenfuzz's ``concurrent`` family (docs/upstream/foreign-kill-value-at-greenlet-end.md).
A worker thread parks a greenlet (the victim) and starts ``g2``.  While ``g2`` runs, the
main thread drops the last reference to the victim: greenlet queues the victim's kill
for the worker thread.  Then ``g2`` returns ``None``.  Its parent's ``g2.switch(1)``
must return ``None`` (the switching docs: a greenlet that ends passes its return value
to its parent).  Here it returns the victim's ``GreenletExit`` (the exception on CPython
3.12 and 3.13, its message on 3.11).

Prints what ``g2.switch(1)`` returned; exit status 1 when it was not ``None``.
Argument ``switch``: ``g2`` switches to its parent with ``"from g2"`` instead of
ending (the control: that value arrives).
"""

import sys
import threading

import greenlet

ENDS = sys.argv[1:] != ["switch"]
victim_parked = threading.Event()
dropped = threading.Event()
box = {}
outcome = []


def parked():
    greenlet.getcurrent().parent.switch()


def run_g2(*args):
    victim_parked.set()
    dropped.wait(10)  # the victim's kill is queued for this thread now
    if ENDS:
        return None
    return greenlet.getcurrent().parent.switch("from g2")


def worker():
    box["victim"] = greenlet.greenlet(parked)
    box["victim"].switch()  # started and parked, in this thread
    g2 = greenlet.greenlet(run_g2)
    outcome.append(g2.switch(1))


thread = threading.Thread(target=worker)
thread.start()
victim_parked.wait(10)
del box["victim"]  # the last reference, dropped in the main thread
dropped.set()
thread.join(10)
want = None if ENDS else "from g2"
got = outcome[0] if outcome else "(nothing: the thread did not finish)"
print(f"g2.switch(1) returned {type(got).__name__} {got!r}; expected {want!r}")
sys.exit(0 if got == want else 1)
