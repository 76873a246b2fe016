"""A greenlet ends into a parent whose own parent is the main greenlet of a thread that
has ended: greenlet calls Py_FatalError ("ran out of parent greenlets while propagating
exception") instead of raising greenlet.error in the switching thread.

Usage: python parent_chain_into_ended_thread.py [raise]

Every step is accepted by greenlet: ``child.parent = spare`` (same thread), then
``spare.parent = <the other thread's main>`` (allowed while ``spare`` has not started).
See docs/upstream/parent-chain-into-ended-thread.md.
"""

import sys
import threading

import greenlet

RAISE = sys.argv[1:] == ["raise"]
main = greenlet.getcurrent()


def child_run():
    main.switch()
    if RAISE:
        raise ValueError("child failed")
    return "child finished"


child = greenlet.greenlet(child_run)
child.switch()                      # child is suspended; its parent is main
spare = greenlet.greenlet(lambda *args: args)
child.parent = spare                # accepted: spare is unstarted and of this thread


def in_thread():
    spare.parent = greenlet.getcurrent()   # accepted: spare has not started


thread = threading.Thread(target=in_thread)
thread.start()
thread.join()
try:
    child.switch()                  # child ends into spare; spare's parent's thread has ended
except greenlet.error as e:         # what greenlet's threading docs lead one to expect
    print("greenlet.error:", str(e).splitlines()[0])
print("survived")
