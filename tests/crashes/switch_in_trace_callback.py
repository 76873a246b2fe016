"""greenlet 2.0.x and 3.0.0rc1: a switch made from inside a ``settrace`` callback breaks
the switch it interrupted (fixed in 3.0.0rc2, whose changelog names "returned NULL
without setting an exception" errors, gevent issue 1985).

What greenfuzz's ``tracing`` family does in mode ``bounce``, by hand: ``g1`` is
suspended; main switches to it; the trace callback, running for that switch, switches
straight back to main (whose switch returns ``'bounce'``); main switches to ``g1``
again, which resumes the callback, so the original switch completes and ``g1`` gets
``'x'``.  On 2.0.2 and 3.0.0rc1 the second switch raises ``SystemError: <method
'switch' of 'greenlet.greenlet' objects> returned NULL without setting an exception``
instead.

Prints one line per step; exits 0 either way.
"""

import greenlet

main = greenlet.getcurrent()


def body():
    print("g1 got", main.switch("parked"))
    return "g1 done"


g1 = greenlet.greenlet(body)
print("started:", g1.switch())
bounced = []


def tracer(event, args):
    if bounced or event != "switch" or args[1] is not g1:
        return
    bounced.append(True)
    args[0].switch("bounce")


greenlet.settrace(tracer)
for step, value in (("first", "x"), ("second", "y")):
    try:
        print("%s switch: %s" % (step, g1.switch(value)))
    except Exception as e:
        print("%s switch raised %s: %s" % (step, type(e).__name__, e))
greenlet.settrace(None)
