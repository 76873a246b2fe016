"""``greenfuzz matrix``: implementations by families, a fixed budget per cell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console
from rich.progress import Progress

from greenfuzz.harness.cli.common import (
    EXIT_FINDING,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    families_option,
    positive,
)
from greenfuzz.harness.envs import catalog
from greenfuzz.harness.program.ir import FAMILIES
from greenfuzz.harness.search.matrix import FINDING, SKIPPED, Cell, Row, markdown, run_matrix


def add_parser(sub: argparse._SubParsersAction) -> None:
    matrix = sub.add_parser("matrix", help="compatibility matrix: a fixed budget per "
                                           "implementation and family, as Markdown and HTML")
    matrix.add_argument("names", nargs="*", metavar="NAME",
                        help=f"implementations from 'greenfuzz impls', greenlet-X.Y.Z or a "
                             ".py implementation file "
                             f"(default: {' '.join(catalog.names())})")
    matrix.add_argument("--families", type=families_option, default=FAMILIES)
    matrix.add_argument("--budget", type=positive(float, "--budget"), default=20.0,
                        help="seconds per cell (default 20)")
    matrix.add_argument("--seed", type=int, default=0)
    matrix.add_argument("--timeout", type=positive(float, "--timeout"), default=2.0)
    matrix.add_argument("--out", type=Path, default=Path("greenfuzz-matrix"))
    matrix.add_argument("--no-differences", action="store_true",
                        help="count documented differences as findings too")


def run(args: argparse.Namespace, console: Console) -> int:
    names = args.names or catalog.names()
    for name in names:
        base = name.partition("@")[0]
        if base not in catalog.names() and not base.startswith("greenlet-") \
                and not name.endswith(".py"):
            raise UsageError(f"unknown implementation name {name!r}; see 'greenfuzz impls'")
    cells = len(names) * len(args.families)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("matrix", total=cells)

        def progress(name: str, family: str, cell: Optional[Cell]) -> None:
            if not family:  # the whole row is skipped
                bar.advance(task, len(args.families))
                if not console.is_terminal:
                    console.print(f"  {name}: skipped", markup=False)
            elif cell is None:
                bar.update(task, description=f"{name} / {family}")
            else:
                bar.advance(task)
                if not console.is_terminal:  # a line per cell in a log
                    console.print(f"  {name} / {family}: {cell_line(cell)}", markup=False)
                    console.file.flush()

        rows = run_matrix(names, args.families, out=args.out, budget=args.budget,
                          seed=args.seed, timeout=args.timeout,
                          use_profiles=not args.no_differences, progress=progress)
    console.print(markdown(rows, args.families, args.out, args.budget), markup=False)
    for name in ("matrix.md", "matrix.html", "matrix.json"):
        console.print(f"wrote {args.out / name}", markup=False)
    return exit_status(rows)


def cell_line(cell: Cell) -> str:
    """One cell for a log line."""
    if cell.status == SKIPPED:
        return f"skipped ({cell.reason})"
    found = f", {len(cell.findings)} finding(s)" if cell.findings else ""
    known = f", known {', '.join(sorted(cell.known))}" if cell.known else ""
    return f"{cell.status} ({cell.programs} programs, {cell.seconds:.0f} s{found}{known})"


def exit_status(rows: Sequence[Row]) -> int:
    """1 when a cell has a finding; 2 (with a line on standard error) when no cell could
    be run at all; else 0."""
    cells = [c for r in rows for c in r.cells.values()]
    if any(c.status == FINDING for c in cells):
        return EXIT_FINDING
    if all(c.status == SKIPPED for c in cells):
        reasons = sorted({r.reason for r in rows if r.reason}
                         | {c.reason for c in cells if c.reason})
        print(f"greenfuzz: error: every cell of the matrix was skipped, nothing was tested "
              f"({'; '.join(reasons)})", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
