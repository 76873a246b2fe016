"""``greenfuzz diff``: the same programs on two implementations; where they disagree."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import List, Optional

from rich.console import Console

from greenfuzz.harness.cli.common import (
    EXIT_FINDING,
    EXIT_OK,
    UsageError,
    families_option,
    positive,
    prepare,
    shrink_seconds,
)
from greenfuzz.harness.envs import catalog
from greenfuzz.harness.program.ir import FAMILIES
from greenfuzz.harness.search.differential import Side, run_diff


class _NewSide(argparse.Action):
    """``diff``: ``--impl``/``--known`` start a side."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: Optional[str] = None) -> None:
        sides = list(getattr(namespace, "sides", None) or [])
        key = "known" if option_string == "--known" else "impl"
        sides.append({key: values})
        namespace.sides = sides


class _SideOption(argparse.Action):
    """``diff``: ``--python``/``--greenlet``/``--differences`` belong to the side before them."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: Optional[str] = None) -> None:
        sides = getattr(namespace, "sides", None)
        if not sides:
            raise UsageError(f"{option_string} must follow the --impl or --known it is for")
        key = (option_string or "").lstrip("-")
        if key in sides[-1]:
            raise UsageError(f"{option_string} given twice for one side")
        sides[-1][key] = values


def add_parser(sub: argparse._SubParsersAction) -> None:
    diff = sub.add_parser(
        "diff", help="run the same programs on two implementations and report where they "
                     "disagree (each --impl or --known starts a side; --python, --greenlet "
                     "and --differences after it apply to that side)")
    diff.add_argument("--impl", action=_NewSide, dest="sides", metavar="SPEC",
                      help="a side: module name or .py path")
    diff.add_argument("--known", action=_NewSide, dest="sides", metavar="NAME",
                      help="a side from 'greenfuzz impls'")
    for option in ("--python", "--greenlet", "--differences"):
        diff.add_argument(option, action=_SideOption, dest="sides",
                          help=f"{option[2:]} of the side before it")
    diff.add_argument("--timeout", type=positive(float, "--timeout"), default=2.0)
    diff.add_argument("--budget", type=positive(float, "--budget"), default=60.0)
    diff.add_argument("--max-examples", type=positive(int, "--max-examples"), default=10**9)
    diff.add_argument("--seed", type=int, default=None)
    diff.add_argument("--out", type=Path, default=Path("greenfuzz-diffs"))
    diff.add_argument("--keep-going", action="store_true")
    diff.add_argument("--families", type=families_option, default=FAMILIES)


def _side(spec: dict, timeout: float) -> Side:
    """A started worker for one side of ``diff`` (the caller closes it)."""
    if "known" in spec:
        try:
            target = catalog.resolve(spec["known"])
        except KeyError:
            raise UsageError(f"unknown implementation name {spec['known']!r}; see "
                             "'greenfuzz impls'") from None
        except catalog.Unavailable as e:
            raise UsageError(f"{spec['known']}: {e}") from None
        impl_spec, python, greenlet = target.impl, target.python, spec.get("greenlet")
        label = spec["known"]
    else:
        impl_spec, python, greenlet = spec["impl"], spec.get("python"), spec.get("greenlet")
        label = impl_spec + (f"@{greenlet}" if greenlet else "") + (
            f" ({python})" if python else "")
    args = argparse.Namespace(impl=impl_spec, python=python, greenlet=greenlet, known=None,
                              differences=spec.get("differences"), in_process=False,
                              timeout=timeout)
    config, executor = prepare(args, out=Path(os.devnull))
    assert executor is not None
    return Side(label, config, executor)


def run(args: argparse.Namespace, console: Console) -> int:
    sides_spec = getattr(args, "sides", None) or []
    if len(sides_spec) != 2:
        raise UsageError(f"diff needs exactly two sides (--impl or --known), got "
                         f"{len(sides_spec)}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output folder {args.out}: {e.strerror}") from None
    sides: List[Side] = []
    try:
        for spec in sides_spec:
            sides.append(_side(spec, args.timeout))
        console.print(f"greenfuzz: {sides[0].config.impl.name} vs {sides[1].config.impl.name}, "
                      f"{args.budget:g} s", markup=False)
        result = run_diff(sides, out=args.out, budget=args.budget,
                          max_examples=args.max_examples, seed_value=args.seed,
                          keep_going=args.keep_going, families=args.families,
                          shrink_seconds=shrink_seconds(args.budget))
    finally:
        for side in sides:
            side.executor.close()
    console.print(f"{result.examples} programs in {result.elapsed:.1f} s, "
                  f"{len(result.disagreements)} disagreement(s)")
    for known, count in sorted(result.known.items()):
        console.print(f"  known difference {known}: {count} programs", markup=False)
    for disagreement in result.disagreements:
        console.print(disagreement.report(), markup=False)
    for path in result.saved:
        console.print(f"  wrote {path}", markup=False)
    if result.interrupted is not None:
        console.print(f"interrupted by signal {result.interrupted}")
        return 128 + result.interrupted
    return EXIT_FINDING if result.disagreements else EXIT_OK
