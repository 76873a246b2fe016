"""The ``greenfuzz`` command's entry point, kept free of heavy imports.

Importing the engine (Hypothesis, rich, every family) takes about half a second; a
SIGINT or SIGTERM arriving in that time must end the command the way an interrupt
during a run does (one line, exit 128 + the signal), not with a traceback or the
default action.  So the handlers are installed here first, then the engine is
imported; ``harness.cli.main`` installs its own for the run itself.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional, Sequence


class _EarlyInterrupt(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    raise _EarlyInterrupt(signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; exit statuses as ``greenfuzz --help`` lists them."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A signal ignored when greenfuzz started (SIGINT in a background job) stays so.
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    try:
        from greenfuzz.harness.cli.main import main as run

        return run(argv)  # installs the run's own handlers, and puts these back after
    except _EarlyInterrupt as e:
        print(f"greenfuzz: interrupted by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
