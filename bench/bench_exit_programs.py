#!/usr/bin/env python
"""What programs that end with the interpreter's exit (family ``shutdown``) cost, by the
kind of ``Leave`` they hold, and how often the daemon-thread abort at exit shows.

Run on demand::

    .venv/bin/python bench/bench_exit_programs.py                  # 1,500 draws, 40 aborts runs
    .venv/bin/python bench/bench_exit_programs.py --draws 3000 --abort-runs 0

Programs are drawn as ``greenfuzz fuzz`` draws them (``bench_executor.draw_programs``,
all families); those that end with the exit run through one ``IsolatedExecutor`` (its
exit zygote), after one warm-up.  The table gives, per ``Leave`` kind a program holds
(``none``: no ``Leave``), how many programs and their mean wall time.  Then
``Spawn(g1)`` + ``Leave(daemon_switching)`` runs ``--abort-runs`` times as its
reproducer's child (a fresh interpreter): how many runs died of which signal
(docs/upstream/daemon-greenlets-abort-at-exit.md: greenlet 3.5.x on CPython 3.11
aborts now and then).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List

# The executor bench draws programs the same way; it sits beside this script.
from bench_executor import draw_programs

from greenfuzz.harness import model
from greenfuzz.harness.execution import at_exit
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.families.base import walk
from greenfuzz.harness.families.core import Spawn
from greenfuzz.harness.families.shutdown import Leave
from greenfuzz.harness.program.ir import Program


def by_leave_kind(draws: int, seed: int, impl: str) -> Dict[str, List[float]]:
    """Wall seconds of each drawn exit program, under every ``Leave`` kind it holds."""
    progs = [p for p in draw_programs(draws, seed) if at_exit.at_exit(p)]
    seconds: Dict[str, List[float]] = defaultdict(list)
    with IsolatedExecutor(impl, timeout=2.0) as executor:
        executor.run(progs[0])  # warm-up: starts the zygote
        for program in progs:
            kinds = {op.kind for _, script in program.scripts() for op in walk(script)
                     if isinstance(op, Leave)} or {"none"}
            start = time.perf_counter()
            executor.run(program)
            took = time.perf_counter() - start
            for kind in kinds:
                seconds[kind].append(took)
    return seconds


def daemon_aborts(runs: int, impl: str) -> Counter:
    """Return codes of ``runs`` runs of the daemon program as its reproducer's child."""
    program = Program(main=(Spawn("g1"), Leave("daemon_switching")), greenlets=(("g1", ()),))
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "daemon.py"
        script.write_text(at_exit.script(program, model.predict(program), impl=impl))
        for _ in range(runs):
            done = subprocess.run([sys.executable, str(script), "--child",
                                   str(Path(folder) / "trace")],
                                  capture_output=True, timeout=30)
            outcomes[done.returncode] += 1
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--abort-runs", type=int, default=40)
    parser.add_argument("--impl", default="greenlet")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    seconds = by_leave_kind(args.draws, args.seed, args.impl)
    print(f"{'Leave kind':<20} {'programs':>8} {'mean ms':>8}")
    for kind, took in sorted(seconds.items()):
        print(f"{kind:<20} {len(took):>8} {sum(took) / len(took) * 1000:>8.1f}")
    if args.abort_runs:
        outcomes = daemon_aborts(args.abort_runs, args.impl)
        print(f"Spawn + Leave(daemon_switching), {args.abort_runs} runs as a child: "
              + ", ".join(f"exit {code}: {n}" for code, n in sorted(outcomes.items())))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
