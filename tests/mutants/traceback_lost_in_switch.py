"""Defect: an exception that reaches a greenlet through ``switch()`` or ``throw()`` (thrown
into it, or from a child that died of it) arrives without the traceback it had: the
frames of the greenlet it was raised in are lost, and so is the history of an exception
thrown on with ``throw(*sys.exc_info())``.  (A bare ``raise`` of the stripped exception
adds no entry for the wrapper's own frame, so no reference to the greenlet is kept.)"""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
FAMILY = "exceptions"


class greenlet(_real.greenlet):
    def switch(self, *args, **kwargs):
        try:
            return super().switch(*args, **kwargs)
        except BaseException as e:
            e.__traceback__ = None
            raise

    def throw(self, *args):
        try:
            return super().throw(*args)
        except BaseException as e:
            e.__traceback__ = None
            raise
