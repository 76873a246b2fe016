"""The main greenlet of an ended thread, held only by a function's local variable, is
freed under the caller while it still refers to it: the next use reads freed memory.

Usage: python thread_main_held_by_local.py local|global|list [ITERATIONS]

``local`` crashes (SIGSEGV) on greenlet 2.0.0 to 3.5.6 under CPython 3.10 to 3.12;
``global`` and ``list`` hold the same object where ``gc.get_referrers`` can see it and
never crash.  See docs/upstream/thread-main-held-by-local.md.
"""

import sys
import threading
import time

import greenlet

HOLDERS = []
KEPT = None


def thread_main():
    """The main greenlet of a thread that has ended, returned as the only reference."""
    box = []
    thread = threading.Thread(target=lambda: box.append(greenlet.getcurrent()))
    thread.start()
    thread.join()
    return box.pop()


def held_by_local(iterations):
    for _ in range(iterations):
        main = thread_main()
        time.sleep(0.01)  # releases the GIL: greenlet cleans up the ended thread's state
        assert main.dead, "an ended thread's main greenlet reports dead"


def held_by_global(iterations):
    global KEPT
    for _ in range(iterations):
        KEPT = thread_main()
        time.sleep(0.01)
        assert KEPT.dead


def held_by_list(iterations):
    for _ in range(iterations):
        HOLDERS[:] = [thread_main()]
        time.sleep(0.01)
        assert HOLDERS[0].dead


if __name__ == "__main__":
    how = sys.argv[1] if len(sys.argv) > 1 else "local"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    {"local": held_by_local, "global": held_by_global, "list": held_by_list}[how](count)
    print("no crash")
