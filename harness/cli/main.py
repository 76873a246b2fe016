"""greenfuzz: fuzz and stress-test implementations of the greenlet API.

Exit status: 0 nothing found, 1 a confirmed finding (already on disk), 2 bad usage or
bad input, 3 an internal error (details in a ``greenfuzz-crash-<time>.txt`` file), 130 /
143 interrupted by SIGINT / SIGTERM; every error is one line, never a traceback.  One
module per command, each with ``add_parser(sub)`` and ``run(args, console)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console

from greenfuzz import __version__
from greenfuzz.harness.cli import (
    defaults,
    diff,
    env,
    fuzz,
    impls,
    matrix,
    profile,
    replay,
    report,
    scale,
)
from greenfuzz.harness.cli.common import EXIT_INTERNAL, EXIT_USAGE, Parser, UsageError
from greenfuzz.harness.search import interrupts

#: In the order ``--help`` lists them.
COMMANDS = {"fuzz": fuzz, "replay": replay, "impls": impls, "diff": diff, "matrix": matrix,
            "scale": scale, "env": env, "profile": profile, "report": report}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="greenfuzz", description=__doc__.splitlines()[0],
                    epilog="exit status: 0 nothing found, 1 a finding, 2 bad usage or input, "
                           "3 internal error ('greenfuzz COMMAND --help' for each command's)")
    parser.add_argument("--version", action="version", version=f"greenfuzz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    for name, command in sub.choices.items():
        command.epilog = f"exit status: {defaults.EXIT_STATUSES.get(name, defaults.EXIT_ANY)}"
    try:
        defaults.apply(sub.choices)
    except defaults.DefaultsError as e:
        raise UsageError(str(e)) from None
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    console = Console(highlight=False, soft_wrap=True)
    try:
        with interrupts.stop_on_signals():
            args = build_parser().parse_args(argv)
            return COMMANDS[args.command].run(args, console)
    except interrupts.Interrupted as e:
        print(f"greenfuzz: interrupted by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    except UsageError as e:
        message = " ".join(str(e).split())  # one line, whatever the cause looked like
        print(f"greenfuzz: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("greenfuzz: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a greenfuzz bug: one line here, the details in a file
        where = crash_report(argv, e)
        first = (str(e).splitlines() or [""])[0][:200]
        print(f"greenfuzz: internal error: {type(e).__name__}: {first} (a greenfuzz bug; "
              f"details in {where})", file=sys.stderr)
        return EXIT_INTERNAL


def crash_report(argv: Optional[Sequence[str]], error: BaseException) -> str:
    """Write the traceback of an internal error to ``greenfuzz-crash-<time>.txt`` in the
    current folder (else the temporary one); returns where, or why it could not."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = "".join([
        f"greenfuzz {__version__} internal error, {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n",
        f"command: {' '.join(sys.argv[:1] + list(sys.argv[1:] if argv is None else argv))}\n",
        f"python: {sys.executable} {platform.python_version()} on {platform.platform()}\n\n",
        *traceback.format_exception(type(error), error, error.__traceback__)])
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        path = folder / f"greenfuzz-crash-{stamp}-{os.getpid()}.txt"
        try:
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "nowhere: no writable folder"
