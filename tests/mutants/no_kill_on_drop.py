"""Defect: a suspended greenlet whose last reference goes away is resurrected (kept in a
module-level list) instead of receiving ``GreenletExit``, so it never runs its exit.
Unstarted and dead greenlets are freed as they should be."""

import greenlet as _real
from greenlet import GreenletExit, error, getcurrent

KIND = "mismatch"
_KEEP = []


class greenlet(_real.greenlet):
    def __del__(self):
        if self:  # started and not dead: greenlet would kill it now
            _KEEP.append(self)
