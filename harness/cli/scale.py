"""``greenfuzz scale``: one large recipe, up to millions of greenlets, checked."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.progress import Progress

from greenfuzz.harness.cli.common import (
    EXIT_FINDING,
    EXIT_OK,
    UsageError,
    greenlet_version,
    impl_spec,
    positive,
)
from greenfuzz.harness.envs import envs
from greenfuzz.harness.program import recipes
from greenfuzz.harness.reporting import findings
from greenfuzz.harness.search import scale


def add_parser(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser("scale", help="run one large recipe (up to millions of greenlets) "
                                      "with every value checked")
    sc.add_argument("--greenlets", type=positive(int, "--greenlets"), default=100_000)
    sc.add_argument("--shape", choices=recipes.SHAPES, default="parked",
                    help="parked (all alive at once, then finished/killed), waves "
                         "(short-lived), chain (parent chain), ring, tree")
    sc.add_argument("--rounds", type=int, default=1, help="resumes per greenlet (parked, "
                                                          "ring)")
    sc.add_argument("--depth", type=int, default=0, help="levels each parked greenlet "
                                                         "descends first")
    sc.add_argument("--via", choices=recipes.VIAS, default="python",
                    help="how it descends: Python calls or calls through C")
    sc.add_argument("--wave", type=positive(int, "--wave"), default=1000)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--impl", default="greenlet", type=impl_spec)
    sc.add_argument("--python", default=None, metavar="PATH")
    sc.add_argument("--greenlet", default=None, metavar="VERSION", type=greenlet_version)
    sc.add_argument("--stall", type=positive(float, "--stall"), default=120.0,
                    help="seconds without progress that count as a hang (default 120)")
    sc.add_argument("--out", type=Path, default=Path("greenfuzz-findings"))
    sc.add_argument("--no-shrink", action="store_true")
    sc.add_argument("--json", action="store_true", help="print the result as JSON")


def _check_importable(module: str, python: Optional[str]) -> None:
    """``UsageError`` unless ``python`` can import ``module``: a missing implementation is
    bad usage, not a crash of the recipe."""
    try:
        done = subprocess.run([python or sys.executable, "-c",
                               "import importlib, sys; importlib.import_module(sys.argv[1])",
                               module], capture_output=True, text=True, timeout=120,
                              check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"importing {module} took more than 120 s") from None
    except OSError as e:
        raise UsageError(f"cannot run {python}: {e.strerror}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise UsageError(f"cannot import implementation {module!r}: {last}")


def run(args: argparse.Namespace, console: Console) -> int:
    try:
        recipe = recipes.Recipe(args.shape, args.greenlets, args.rounds, args.depth, args.via,
                              args.wave, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    need, have = recipe.peak_bytes(), scale.available_bytes()
    if need > have:
        raise UsageError(f"{recipe.greenlets} {recipe.shape} greenlets need about "
                         f"{need / 2**30:.1f} GiB; {have / 2**30:.1f} GiB is available")
    try:
        python = (envs.greenlet_python(args.greenlet, args.python) if args.greenlet else
                  envs.find_interpreter(args.python) if args.python else None)
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    if args.impl.endswith(".py") and not os.path.exists(args.impl):
        raise UsageError(f"implementation file not found: {args.impl}")
    if not args.impl.endswith(".py"):
        _check_importable(args.impl, python)
    quiet = args.json
    findings.clean_stale(args.out)  # what a run killed while writing left behind
    with Progress(console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task("starting", total=None)

        def progress(line: dict) -> None:
            if "progress" in line:
                bar.update(task, description=f"{line['progress']}: {line['live']:,} live, "
                                             f"RSS {line['rss'] / 2**20:,.0f} MiB",
                           completed=line["done"], total=line["total"])
            elif "phase" in line and not quiet:
                bar.console.print(
                    f"  {line['phase']:<16} {line['seconds']:>8.2f} s  "
                    f"{line['switches_per_second']:>10,} switches/s  "
                    f"peak RSS {line['peak_rss'] / 2**20:>8,.0f} MiB"
                    + (f"  {line['bytes_per_live']:,} bytes per live greenlet"
                       if "bytes_per_live" in line else ""), markup=False)

        if not quiet:
            console.print(f"greenfuzz scale: {recipe.shape}, {recipe.greenlets:,} greenlets "
                          f"on {args.impl}", markup=False)
        result = scale.run_recipe(recipe, args.impl, python, args.stall, progress)
        saved: List[Path] = []
        if not result.ok:
            if not args.no_shrink:
                bar.update(task, description="shrinking the recipe", total=None)
                result = scale.shrink(result, args.impl, python, args.stall)
            saved = scale.save(result, args.impl, args.out)
    if args.json:
        print(json.dumps({"recipe": recipe.to_json(), "outcome": result.outcome,
                          "shrunk_recipe": result.recipe.to_json(), "phases": result.phases,
                          "finding": result.finding, "detail": result.detail,
                          "done": result.done, "saved": [str(p) for p in saved]}))
    elif result.ok:
        console.print(f"no findings: {result.done.get('switches', 0):,} switches checked in "
                      f"{result.seconds:.1f} s, peak {result.done.get('peak_live', 0):,} live "
                      f"greenlets, peak RSS {result.done.get('peak_rss', 0) / 2**20:,.0f} MiB"
                      + ("; liveness checked exactly at every kill and by weak references "
                         f"to every {recipe.sample}-th greenlet" if recipe.shape in
                         ("parked", "waves") else ""), markup=False)
    else:
        what = result.finding or {"outcome": result.outcome, "detail": result.detail}
        console.print(f"[{result.outcome}] with {result.recipe.greenlets:,} greenlets: "
                      f"{json.dumps(what)}", markup=False)
        for path in saved:
            console.print(f"  wrote {path}", markup=False)
    return EXIT_OK if result.ok else EXIT_FINDING
