"""Defect that only shows at scale: with more than 200,000 greenlets alive, switch()
returns None instead of the value sent.  Small programs never see it; a scale run must."""

import os
import weakref

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent  # noqa: F401

#: GREENFUZZ_MUTANT_THRESHOLD lowers it, so that tests can check shrinking quickly.
THRESHOLD = int(os.environ.get("GREENFUZZ_MUTANT_THRESHOLD", "200000"))
_live = [0]


def _gone() -> None:
    _live[0] -= 1


class greenlet(_real.greenlet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _live[0] += 1
        weakref.finalize(self, _gone)

    def switch(self, *args, **kwargs):
        result = super().switch(*args, **kwargs)
        return None if _live[0] > THRESHOLD else result
