"""PyPy's greenlet 0.4.13 (Debian's pypy3): two ways a greenlet's end goes wrong.

greenlet's switching docs: when a greenlet dies, "its return value is passed to its
parent"; a switch to an unstarted greenlet starts it with the arguments; "any attempt to
switch to a dead greenlet actually goes to the dead greenlet's parent".

``dead``: g2 was made inside g1, so its parent is g1, which then ended.  Switching to
g2 runs it, and its result goes up past the dead g1 to main (greenlet).  PyPy raises
``greenlet.error: got an already-finished continulet`` instead.

``unstarted``: g1's parent g2 has not started.  When g1 returns, g2 starts with g1's
result (greenlet).  PyPy skips g2 and hands the result to main.

Run by docs/implementations.md's claim and ``tests/test_envs.py``.  Prints what
happened; exit status 1 where it differs from greenlet's documented behaviour.
"""

import sys

import greenlet

if sys.argv[1:] == ["dead"]:
    made = []
    g1 = greenlet.greenlet(lambda: made.append(greenlet.greenlet(lambda: "g2 ran")))
    g1.switch()
    try:
        got = made[0].switch()
    except greenlet.error as e:
        got = "greenlet.error: %s" % e
    print("switch to g2 under the dead g1 ->", got)
    sys.exit(0 if got == "g2 ran" else 1)
elif sys.argv[1:] == ["unstarted"]:
    g2 = greenlet.greenlet(lambda *args: ("g2 started with", args))
    g1 = greenlet.greenlet(lambda: "g1 returned", g2)
    got = g1.switch()
    print("main's switch to g1 ->", got)
    sys.exit(0 if got == ("g2 started with", ("g1 returned",)) else 1)
else:
    sys.exit("usage: pypy_parent_chain.py dead|unstarted")
