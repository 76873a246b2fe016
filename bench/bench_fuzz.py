#!/usr/bin/env python
"""End-to-end ``greenfuzz fuzz`` programs per second against the executor's own limit,
measured in the same run.

Run on demand::

    .venv/bin/python bench/bench_fuzz.py                   # 2 rounds of 15 s
    .venv/bin/python bench/bench_fuzz.py --families=-shutdown

Each round first runs the campaign (``run_campaign``, the CLI's defaults: all families,
isolated, memory checks and verification on) for ``--seconds``, then runs programs drawn
the same way (``programs()``, same families) through an ``IsolatedExecutor`` alone, as
many as the campaign ran, capped at ``--limit-count``: what execution by itself allows.
The ratio of the two is what generation, the model and the judging cost on top.
``--before`` also runs the campaign drawing programs choice by choice
(``programs_per_draw``, as before genomes), in the same round.  ``--jobs N`` also runs
the same campaign as N jobs side by side (``greenfuzz fuzz --jobs N``, ``run_jobs``), in
the same round, and prints its programs/s against the single campaign's, and against N
executors side by side on the drawn programs (each its share, in a process of its own):
what execution by itself allows on the whole machine::

    .venv/bin/python bench/bench_fuzz.py --jobs 2

``--old`` also runs the single campaign and the executor the way they ran before the
exit zygote (a fresh interpreter per program that ends with the exit), in the same
round (odd rounds run the old way first), and prints new/old ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

# The executor bench draws programs the same way; it sits beside this script
# (bench/ is sys.path[0] when run as python bench/bench_fuzz.py).
from bench_executor import draw_programs

from greenfuzz.harness.execution import implementations
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.families import names
from greenfuzz.harness.judging import differences
from greenfuzz.harness.search import campaign
from greenfuzz.harness.search.campaign import DEFAULT_PROGRAMS_PER_CHILD, CampaignConfig
from greenfuzz.harness.search.jobs import run_jobs
from greenfuzz.strategies import switch_graphs


def fuzz(args: argparse.Namespace, families: tuple, r: int, jobs: int = 1,
         zygote: bool = True) -> Tuple[float, int]:
    """Programs per second of one campaign (CLI defaults), or of ``jobs`` side by side,
    and how many programs it ran; ``zygote=False``: one campaign without the exit zygote."""
    with tempfile.TemporaryDirectory() as out:
        # The release's known bugs are known, as in greenfuzz fuzz: else shrinking one
        # (greenlet 3.5.6 on CPython 3.11 aborts at exit now and then) eats the round.
        impl = implementations.load(args.impl)
        profile = differences.with_release(None, args.impl, impl.version,
                                           platform.python_version())
        config = CampaignConfig(impl=Implementation(args.impl, version=impl.version),
                                out=Path(out), budget=args.seconds, seed=r,
                                families=families, profile=profile)
        if jobs > 1:
            start = time.perf_counter()
            result = run_jobs(config, jobs, memory_limit=4 << 30)
            return result.examples / (time.perf_counter() - start), result.examples
        executor = IsolatedExecutor(args.impl, timeout=config.timeout,
                                    programs_per_child=config.programs_per_child,
                                    exit_zygote=zygote)
        executor.start()
        try:
            start = time.perf_counter()
            result = campaign.run_campaign(config, executor=executor)
            return result.examples / (time.perf_counter() - start), result.examples
        finally:
            executor.close()


def executor_rate(args: argparse.Namespace, progs: list, zygote: bool = True,
                  ready: Callable[[], object] = lambda: None) -> float:
    """Programs per second of an ``IsolatedExecutor`` alone on ``progs``, timed from
    when ``ready()`` returns (called after the warm-up)."""
    executor = IsolatedExecutor(args.impl, programs_per_child=DEFAULT_PROGRAMS_PER_CHILD,
                                exit_zygote=zygote)
    executor.start()
    try:
        executor.run(progs[0])  # warm-up
        ready()
        start = time.perf_counter()
        for p in progs:
            executor.run(p)
        return len(progs) / (time.perf_counter() - start)
    finally:
        executor.close()


def _share(args: argparse.Namespace, progs: list, barrier: Any, out: Any) -> None:
    """One of ``executors_rate``'s processes: its seconds on ``progs``, timed once all
    have started."""
    out.put(len(progs) / executor_rate(args, progs,
                                       ready=lambda: barrier.wait(timeout=120)))


def executors_rate(args: argparse.Namespace, progs: list, n: int) -> float:
    """Programs per second of ``n`` ``IsolatedExecutor``s side by side, each running its
    share of ``progs`` in a process of its own, from the moment all had started."""
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(n), context.Queue()
    shares = [progs[i::n] for i in range(n)]
    workers = [context.Process(target=_share, args=(args, share, barrier, out))
               for share in shares]
    for w in workers:
        w.start()
    try:
        walls = [out.get(timeout=600) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    return len(progs) / max(walls)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--impl", default="greenlet")
    parser.add_argument("--families", default="", help="as greenfuzz fuzz --families "
                        "(default all; -name,... for all but those)")
    parser.add_argument("--limit-count", type=int, default=1000)
    parser.add_argument("--before", action="store_true")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="also run the campaign as N jobs side by side")
    parser.add_argument("--old", action="store_true",
                        help="also without the exit zygote, in the same round")
    args = parser.parse_args(argv)
    every = names()
    if args.families.startswith("-"):
        families = tuple(f for f in every if f not in args.families[1:].split(","))
    else:
        families = tuple(args.families.split(",")) if args.families else every
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores; families "
          f"{','.join(families)}")
    print(f"{'round':>5} {'fuzz programs':>14} {'fuzz /s':>8} {'executor /s':>12} {'ratio':>6}"
          + (f" {'before /s':>10}" if args.before else "")
          + (f" {f'{args.jobs} jobs /s':>10} {'speed-up':>8} {f'{args.jobs} exec /s':>10}"
             f" {'ratio':>6}" if args.jobs else "")
          + (f" {'old fuzz /s':>11} {'old exec /s':>11} {'x fuzz':>6} {'x exec':>6}"
             if args.old else ""))
    for r in range(args.rounds):
        before = ""
        if args.before:
            real = campaign.programs
            campaign.programs = switch_graphs.programs_per_draw
            try:
                rate, _ = fuzz(args, families, r)
            finally:
                campaign.programs = real
            before = f" {rate:>10.1f}"
        if args.old and r % 2:  # odd rounds run the old way first: neither is always first
            old_fuzz, _ = fuzz(args, families, r, zygote=False)
        fuzz_rate, examples = fuzz(args, families, r)
        if args.old and not r % 2:
            old_fuzz, _ = fuzz(args, families, r, zygote=False)
        if args.jobs:
            jobs_rate, _ = fuzz(args, families, r, args.jobs)
        progs = draw_programs(min(max(examples, 50), args.limit_count), 100 + r, families)
        if args.jobs:
            side_by_side = executors_rate(args, progs, args.jobs)
            before += (f" {jobs_rate:>10.1f} {jobs_rate / fuzz_rate:>8.2f} "
                       f"{side_by_side:>10.1f} {jobs_rate / side_by_side:>6.2f}")
        if args.old and r % 2:
            old_exec = executor_rate(args, progs, zygote=False)
        exec_rate = executor_rate(args, progs)
        old = ""
        if args.old:
            if not r % 2:
                old_exec = executor_rate(args, progs, zygote=False)
            old = (f" {old_fuzz:>11.1f} {old_exec:>11.1f} {fuzz_rate / old_fuzz:>6.2f} "
                   f"{exec_rate / old_exec:>6.2f}")
        print(f"{r + 1:>5} {examples:>14} {fuzz_rate:>8.1f} {exec_rate:>12.1f} "
              f"{fuzz_rate / exec_rate:>6.2f}{before}{old}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} (/proc/loadavg: "
          f"{Path('/proc/loadavg').read_text().strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
