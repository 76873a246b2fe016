#!/usr/bin/env python
"""Where one campaign job's time goes: the parts of the pipeline, per program run.

Run on demand::

    .venv/bin/python bench/bench_campaign_time.py                # 20 s, seed 5
    .venv/bin/python bench/bench_campaign_time.py --seconds 60 --families core,shutdown

One job (``run_campaign``, isolated, the CLI's defaults and the installed greenlet's
release profile) runs with the pipeline's steps wrapped in timers: drawing a program
(``_build``, the model's taming included), rendering, compiling, the worker's round
trip, programs that end with the exit, judging, steering, the raw-memory checks.  It
prints each step's seconds and milliseconds per program run, the CPU of this process
and of its children (worker, forked children, exit zygote) per program run, the
cyclic collector's time here, and how many programs were drawn again and not run.
Steps nest (the round trip includes compiling; judging includes both), so the rows do
not add up to the wall time.
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict

import greenlet

from greenfuzz.harness.execution import at_exit, render
from greenfuzz.harness.execution import executor as executor_module
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.judging import checks, differences
from greenfuzz.harness.program.ir import FAMILIES
from greenfuzz.harness.search import campaign
from greenfuzz.harness.target import loader
from greenfuzz.strategies import switch_graphs

SECONDS: Counter = Counter()
CALLS: Counter = Counter()


def timed(owner: Any, name: str, label: str) -> None:
    """Wrap ``owner.name`` so that its calls add up under ``label``."""
    inner: Callable = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - start
            CALLS[label] += 1

    setattr(owner, name, wrapper)


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--families", default="all")
    args = parser.parse_args()
    families = FAMILIES if args.families == "all" else tuple(args.families.split(","))

    timed(switch_graphs, "_build", "draw (_build)")
    timed(render, "program_source", "render")
    timed(loader, "compiled", "compile")
    timed(executor_module.IsolatedExecutor, "run_source", "worker round trip (compile in)")
    timed(at_exit, "run", "program ending with the exit")
    timed(campaign, "judge", "judge (all of a run)")
    timed(campaign, "steer", "steer")
    timed(checks, "compare", "compare")
    timed(campaign, "_memory_checks", "raw-memory checks")

    collector: Dict[str, float] = {"seconds": 0.0, "start": 0.0}

    def on_collection(phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            collector["start"] = time.perf_counter()
        else:
            collector["seconds"] += time.perf_counter() - collector["start"]

    gc.callbacks.append(on_collection)
    profile = differences.with_release(None, "greenlet", greenlet.__version__,
                                       platform.python_version())
    with tempfile.TemporaryDirectory() as out:
        config = campaign.CampaignConfig(
            impl=Implementation("greenlet", version=greenlet.__version__), out=Path(out),
            budget=args.seconds, seed=args.seed, families=families, profile=profile)
        mine, start = cpu(resource.RUSAGE_SELF), time.perf_counter()
        result = campaign.run_campaign(config)
        wall, mine = time.perf_counter() - start, cpu(resource.RUSAGE_SELF) - mine
    gc.callbacks.remove(on_collection)
    n = max(1, result.examples)
    print(f"{result.examples} programs run in {wall:.1f} s ({result.examples / wall:.0f}/s), "
          f"{result.repeats} drawn again and not run; greenlet {greenlet.__version__}, "
          f"seed {args.seed}")
    print(f"CPU per program run: this process {mine / n * 1000:.2f} ms, its children "
          f"{cpu(resource.RUSAGE_CHILDREN) / n * 1000:.2f} ms (reaped ones); the collector "
          f"here {collector['seconds'] / n * 1000:.2f} ms")
    print(f"{'step':<34} {'seconds':>8} {'ms/program run':>15} {'calls':>7}")
    for label, seconds in SECONDS.most_common():
        print(f"{label:<34} {seconds:>8.2f} {seconds / n * 1000:>15.2f} {CALLS[label]:>7}")
    findings = [f.id for f in result.findings]
    print(f"findings {findings or 'none'}; known {result.known or 'none'}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
