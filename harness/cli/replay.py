"""``greenfuzz replay``: run a saved program (a finding's JSON) again."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from greenfuzz.harness import model
from greenfuzz.harness.cli.common import (
    EXIT_FINDING,
    EXIT_OK,
    UsageError,
    add_impl_options,
    prepare,
)
from greenfuzz.harness.judging import differences as profiles
from greenfuzz.harness.program.ir import ProgramError
from greenfuzz.harness.search.campaign import (
    judge,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="run a saved program again: exit 1 if it "
                                           "still fails")
    replay.add_argument("file", type=Path, help="a finding's .json (or a program .json)")
    add_impl_options(replay)


def run(args: argparse.Namespace, console: Console) -> int:
    from greenfuzz.harness.reporting.findings import load_program

    try:
        program = load_program(args.file)
    except ProgramError as e:
        raise UsageError(str(e)) from None
    try:
        model.predict(program)
    except model.Unsupported as e:
        raise UsageError(f"{args.file}: the model leaves such programs out on purpose "
                         f"({e}); greenfuzz never draws them") from None
    config, executor = prepare(args, out=Path(os.devnull))
    impl = config.impl
    try:
        finding = judge(program, config, executor)
    finally:
        if executor is not None:
            executor.close()
    if finding.verdict.ok:
        console.print(f"OK: {impl.name} agrees with the model on {args.file}")
        return EXIT_OK
    if finding.kind == profiles.KNOWN:
        console.print(f"KNOWN: {impl.name} differs from the model on {args.file} as its "
                      "profile documents:", markup=False)
        console.print("  " + finding.verdict.summary.replace("\n", "\n  "), markup=False)
        return EXIT_OK
    console.print(finding.report(), markup=False)
    plain = finding.plain()  # the program as plain greenlet code (reporting.plain)
    if plain is not None:
        console.print("plain reproducer (exit 1 while it differs):\n" + plain.source,
                      markup=False)
    return EXIT_FINDING
