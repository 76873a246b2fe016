"""Interrupts: SIGINT and SIGTERM stop a run promptly, and what was found is kept.

Every long-running command (``fuzz``, ``diff``, ``matrix``, ``--jobs``) runs inside
``stop_on_signals``; the code between programs calls ``check_signals``, and the code
that saves findings first calls ``wind_down``, so that a second signal cannot cut the
saving short.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator, List


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop at once, keeping what was found.

    A ``KeyboardInterrupt`` so that Hypothesis lets it through (it stops a run rather
    than counting as a failure), with the signal that caused it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: Signals received while ``stop_on_signals`` is in effect (the first one decides).
_received: List[int] = []
#: Set once a caller has begun to wind down: later signals are only recorded, so that
#: saving what was found is not cut short.
_winding_down: List[bool] = []


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    if not _winding_down:
        raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` while in effect.

    The handler raises wherever the main thread is, which interrupts blocking waits at
    once; but an exception raised while a ``gc`` callback runs (Hypothesis installs one)
    is printed and dropped by the interpreter.  So the signal is also recorded, and
    ``check_signals`` (called between programs and between shrinking attempts) raises
    it again: an interrupt can be delayed by at most one program, never lost."""
    # A signal ignored when greenfuzz started (SIGINT in a background job) stays ignored.
    old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
           if signal.getsignal(sig) is not signal.SIG_IGN}
    _received.clear()
    _winding_down.clear()
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def check_signals() -> None:
    """Raise ``Interrupted`` if a signal arrived (and was perhaps swallowed)."""
    if _received and not _winding_down:
        raise Interrupted(_received[0])


def pending() -> bool:
    """Whether a signal has arrived (while ``stop_on_signals`` is in effect)."""
    return bool(_received)


def wind_down() -> None:
    """From now on signals are recorded, not raised: what follows saves findings."""
    _winding_down.append(True)
