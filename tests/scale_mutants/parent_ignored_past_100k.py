"""Defect that only shows at scale, in an operation the fixed shapes never perform: with
more than 100,000 greenlets alive, assigning ``.parent`` is silently ignored (no error,
the old parent stays)."""

import os
import weakref

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent  # noqa: F401

#: GREENFUZZ_MUTANT_THRESHOLD lowers it, so that tests can check shrinking quickly.
THRESHOLD = int(os.environ.get("GREENFUZZ_MUTANT_THRESHOLD", "100000"))
_live = [0]
_parent = _real.greenlet.parent


def _gone() -> None:
    _live[0] -= 1


def _set_parent(self, value):
    if _live[0] > THRESHOLD:
        return
    _parent.__set__(self, value)


class greenlet(_real.greenlet):
    parent = property(_parent.__get__, _set_parent)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _live[0] += 1
        weakref.finalize(self, _gone)
