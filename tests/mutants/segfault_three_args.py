"""Defect: starting a greenlet with exactly three positional arguments dereferences NULL.

(The defect sits in ``run``'s start-up rather than in a Python-level ``switch()``
wrapper: a wrapper frame would also keep greenlets alive through tracebacks, a second
defect that the harness would report first.)
"""

import ctypes

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "crash"


class greenlet(_real.greenlet):
    def __init__(self, run=None, parent=None):
        def start(*args, **kwargs):
            if len(args) == 3:
                ctypes.string_at(0)
            return run(*args, **kwargs)

        super().__init__(start, parent)
