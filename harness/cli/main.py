"""greenfuzz: fuzz and stress-test implementations of the greenlet API.

Exit status: 0 nothing found, 1 a finding (already on disk), 2 bad usage or bad input,
always with a one-line message and never a traceback.  One module per command, each with
``add_parser(sub)`` and ``run(args, console)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from rich.console import Console

from greenfuzz import __version__
from greenfuzz.harness.cli import defaults, diff, env, fuzz, impls, matrix, profile, replay, scale
from greenfuzz.harness.cli.common import EXIT_USAGE, Parser, UsageError

#: In the order ``--help`` lists them.
COMMANDS = {"fuzz": fuzz, "replay": replay, "impls": impls, "diff": diff, "matrix": matrix,
            "scale": scale, "env": env, "profile": profile}


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
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command].run(args, console)
    except UsageError as e:
        message = " ".join(str(e).split())  # one line, whatever the cause looked like
        print(f"greenfuzz: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("greenfuzz: interrupted", file=sys.stderr)
        return 130
