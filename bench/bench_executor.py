#!/usr/bin/env python
"""Programs per second: in-process and ``IsolatedExecutor`` (fresh child, reused child).

Run on demand::

    .venv/bin/python bench/bench_executor.py                  # 300 programs, greenlet
    .venv/bin/python bench/bench_executor.py --count 500 --impl harness/envs/threaded_greenlet.py
    .venv/bin/python bench/bench_executor.py --families all --old   # and before the zygote

The programs are drawn once from ``greenfuzz.strategies.programs()`` (Hypothesis, generate phase
only, no database) and every mode runs the same list, in the same order, after one
warm-up program. ``IsolatedExecutor`` runs twice: one fresh child per program, then
``programs_per_child=--reuse`` (by default ``greenfuzz fuzz``'s). Besides wall-clock
programs per second the table shows the CPU time per program of this process plus its
children (the worker and what it forked), which is much less sensitive to other load on
the machine; and it checks that every mode observed the same traces as in-process.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from typing import Callable, List, Tuple

from hypothesis import HealthCheck, Phase, given, seed, settings

from greenfuzz.harness import model
from greenfuzz.harness.execution import implementations, runner
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import FAMILIES, Program
from greenfuzz.harness.search.campaign import DEFAULT_PROGRAMS_PER_CHILD
from greenfuzz.strategies import programs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def draw_programs(count: int, seed_value: int,
                  families: Tuple[str, ...] = FAMILIES) -> List[Program]:
    drawn: List[Program] = []

    @seed(seed_value)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(programs(families=families))
    def collect(program: Program) -> None:
        drawn.append(program)

    collect()
    return drawn


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(run: Callable[[Program], runner.Observation], progs: List[Program],
            finish: Callable[[], None] = lambda: None
            ) -> Tuple[float, float, List[runner.Observation]]:
    run(progs[0])  # warm-up
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    observations = [run(p) for p in progs]
    wall = time.perf_counter() - t0
    finish()  # reap the worker, so that its CPU time is counted
    return wall, cpu_seconds() - cpu0, observations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--impl", default="greenlet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--families", default="core",
                        help="families to draw from (default core: small programs; 'all' "
                             "for every family)")
    parser.add_argument("--reuse", type=int, default=DEFAULT_PROGRAMS_PER_CHILD,
                        help="programs_per_child for the last row (default "
                             f"{DEFAULT_PROGRAMS_PER_CHILD}, as greenfuzz fuzz)")
    parser.add_argument("--old", action="store_true",
                        help="also the last row with what came before, in the same run: "
                             "a fresh interpreter per program that ends with the exit")
    args = parser.parse_args()

    impl = implementations.load(args.impl)
    families = FAMILIES if args.families == "all" else tuple(args.families.split(","))
    progs = draw_programs(args.count, args.seed, families)
    ops = sum(p.size() for p in progs) / len(progs)
    print(f"{len(progs)} programs (mean {ops:.1f} ops), implementation {impl.name}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    results = []
    results.append(("in-process", *measure(lambda p: runner.run_inprocess(p, impl), progs)))
    executor = IsolatedExecutor(args.impl, timeout=args.timeout)
    executor.start()
    results.append(("fresh child", *measure(executor.run, progs, executor.close)))
    executor = IsolatedExecutor(args.impl, timeout=args.timeout, programs_per_child=args.reuse)
    executor.start()
    label = f"reuse={args.reuse}" + (" (fuzz)" if args.reuse == DEFAULT_PROGRAMS_PER_CHILD
                                     else "")
    results.append((label, *measure(executor.run, progs, executor.close)))
    if args.old:
        executor = IsolatedExecutor(args.impl, timeout=args.timeout,
                                    programs_per_child=args.reuse, exit_zygote=False)
        executor.start()
        results.append((f"reuse={args.reuse} old", *measure(executor.run, progs,
                                                            executor.close)))

    base_rate = len(progs) / results[0][1]
    # Messages of the implementation's own errors carry addresses: compare every mode
    # with the model (as the checks do), not traces with each other.
    expected = [model.predict(p) for p in progs]
    print(f"{'mode':<18} {'programs/s':>10} {'x in-proc':>9} {'CPU ms/prog':>11} "
          f"{'outcomes':>24} {'agree':>8}")
    status = 0
    for name, wall, cpu, observations in results:
        rate = len(progs) / wall
        outcomes: dict = {}
        for o in observations:
            outcomes[o.outcome] = outcomes.get(o.outcome, 0) + 1
        same = sum(checks.compare(p, want, o).ok
                   for p, o, want in zip(progs, observations, expected))
        if same != len(progs):
            status = 1
        summary = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        print(f"{name:<18} {rate:>10.0f} {rate / base_rate:>9.2f} "
              f"{cpu / len(progs) * 1000:>11.2f} {summary:>24} {same:>4}/{len(progs)}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
