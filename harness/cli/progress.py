"""Progress that fits where it runs: a live line in a terminal, plain lines in a log.

A CI log is not a terminal: a live display would print nothing until the end (or escape
codes), and many CI systems end a job that prints nothing for ten minutes.  There a plain
line is printed every ``INTERVAL`` seconds instead.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.text import Text

#: Seconds between plain progress lines when the output is not a terminal.
INTERVAL = 10.0


def _line(result: Any) -> str:
    rate = result.examples / result.elapsed if result.elapsed else 0.0
    running = getattr(result, "running", 0)  # jobs of a --jobs run still going
    return (f"  {result.examples} programs, {rate:.0f}/s, {len(result.findings)} finding(s), "
            f"{result.elapsed:.0f} s" + (f", {running} jobs running" if running else ""))


@contextmanager
def campaign_progress(console: Console, quiet: bool = False,
                      interval: float = INTERVAL) -> Iterator[Callable[[Any], None]]:
    """A progress callback for a campaign (anything with ``examples``, ``elapsed`` and
    ``findings``): redrawn in place in a terminal, a line per ``interval`` otherwise."""
    if quiet:
        yield lambda result: None
        return
    if console.is_terminal:
        with Live(Text(""), console=console, transient=True, refresh_per_second=4) as live:
            yield lambda result: live.update(Text(_line(result)))
        return
    last = [time.monotonic()]

    def plain(result: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            console.print(_line(result), markup=False, highlight=False)
            console.file.flush()

    yield plain
