#!/usr/bin/env python
"""Programs drawn per second, and what they contain: genome decoding against per-draw
Hypothesis strategies, in the same run.

Run on demand::

    .venv/bin/python bench/bench_generation.py                    # 3 rounds of 6 s each way
    .venv/bin/python bench/bench_generation.py --seconds 10 --families core,stack
    .venv/bin/python bench/bench_generation.py --mutants 3        # time to find mutants too

``before`` is ``greenfuzz.strategies.programs_per_draw`` (every choice a Hypothesis
strategy, as programs were drawn before genomes), ``after`` is ``programs`` (one genome
per program, decoded).  The two alternate, round by round, so that other load on the
machine weighs on both alike; the table gives programs per second per round, then,
over all rounds: programs that contain an op of each family, mean greenlets and ops
(nested ones included) per program, the share of draws the model refused (a program
it cannot predict even after taming: ``reject``), and for ``after`` the genome bytes
a program reads.  ``--mutants K`` also runs ``greenfuzz fuzz``'s campaign (isolated, this
process drawing) against each mutant of ``tests/mutants/`` for seeds 0..K-1 each way and
prints the median programs until the mutant is found.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as hst

from greenfuzz.harness import families as registry
from greenfuzz.harness.program.ir import FAMILIES, MAIN, Program
from greenfuzz.strategies import switch_graphs

ROOT = Path(__file__).resolve().parent.parent


class Tally:
    """What one way of drawing produced."""

    def __init__(self) -> None:
        self.rates: List[float] = []
        self.programs = 0
        self.refused = 0
        self.greenlets = 0
        self.ops = 0
        self.per_family: Counter = Counter()
        self.genome_bytes: List[int] = []


def _tally(tally: Tally, program: Program) -> None:
    tally.programs += 1
    tally.greenlets += len(program.greenlets)
    seen = set()
    for _, script in ((MAIN, program.main), *program.greenlets):
        for op in registry.walk(script):
            tally.ops += 1
            seen.add(registry.family_of(op))
    tally.per_family.update(seen)


def draw_for(strategy: hst.SearchStrategy, seconds: float, seed_value: int,
             tally: Tally) -> None:
    """Draw programs for about ``seconds`` (Hypothesis generate phase, no database)."""
    refusals = [0]
    real_reject = switch_graphs.reject

    def counting_reject() -> None:
        refusals[0] += 1
        real_reject()

    drawn = [0]
    start = time.perf_counter()
    deadline = start + seconds

    @seed(seed_value)
    @settings(max_examples=10**6, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(program: Program) -> None:
        drawn[0] += 1
        _tally(tally, program)
        if time.perf_counter() > deadline:
            raise _Enough

    switch_graphs.reject = counting_reject
    try:
        collect()
    except _Enough:
        pass
    finally:
        switch_graphs.reject = real_reject
    tally.rates.append(drawn[0] / (time.perf_counter() - start))
    tally.refused += refusals[0]


class _Enough(Exception):
    pass


def genome_use(count: int, families: Tuple[str, ...]) -> List[int]:
    """Genome bytes each of ``count`` programs decoded from random chunks reads."""
    from hypothesis.errors import UnsatisfiedAssumption

    fams = tuple(f for f in registry.names() if f in families or f == "core")
    used = []
    for _ in range(count):
        chunks = [0]

        def next_chunk(chunks: List[int] = chunks) -> bytes:
            chunks[0] += 1
            return os.urandom(switch_graphs.GENOME_CHUNK)
        with contextlib.suppress(UnsatisfiedAssumption):
            switch_graphs._from_chunks(next_chunk, (1, 6, 6, switch_graphs.GRAPH_SHAPES, fams))
        used.append(chunks[0] * switch_graphs.GENOME_CHUNK)
    return used


def time_to_find(mutant: Path, seed_value: int, budget: float) -> Tuple[Optional[int], int, float]:
    """Programs the campaign ran until the first one failed on ``mutant`` (None: not
    found), programs in all (shrinking included), and seconds."""
    from greenfuzz.harness.execution.implementations import Implementation
    from greenfuzz.harness.search import campaign

    runs = [0]
    first: List[int] = []
    real_judge = campaign.judge

    def counting_judge(*args: object, **kwargs: object) -> object:
        finding = real_judge(*args, **kwargs)
        runs[0] += 1
        if not finding.verdict.ok and not first:
            first.append(runs[0])
        return finding

    start = time.perf_counter()
    campaign.judge = counting_judge
    try:
        with tempfile.TemporaryDirectory() as out:
            config = campaign.CampaignConfig(
                impl=Implementation(str(mutant)), out=Path(out), budget=budget,
                seed=seed_value, memory=False, verify=False, batch=50)
            result = campaign.run_campaign(config)
    finally:
        campaign.judge = real_judge
    found = first[0] if result.findings and first else None
    return found, runs[0], time.perf_counter() - start


def mutants_table(k: int, budget: float, sample: List[str]) -> None:
    from greenfuzz.harness.search import campaign
    ways: Dict[str, Callable] = {"before": switch_graphs.programs_per_draw,
                                 "after": switch_graphs.programs}
    print(f"\ntime to find, median of seeds 0..{k - 1} ('-': not found within {budget:.0f} s): "
          "programs until the first failing one / programs run in all, shrinking "
          "included / seconds")
    print(f"{'mutant':30} {'before':>22} {'after':>22}")
    real = campaign.programs
    try:
        for name in sample:
            row = []
            for way in ways.values():
                campaign.programs = way
                runs = [time_to_find(ROOT / "tests" / "mutants" / name, s, budget)
                        for s in range(k)]
                hits = [r for r in runs if r[0] is not None]
                if not hits:
                    row.append("-")
                    continue
                text = (f"{statistics.median(h[0] for h in hits):.0f} / "
                        f"{statistics.median(h[1] for h in hits):.0f} / "
                        f"{statistics.median(h[2] for h in hits):.1f}")
                row.append(text + ("" if len(hits) == k else f" ({len(hits)}/{k})"))
            print(f"{name:30} {row[0]:>22} {row[1]:>22}", flush=True)
    finally:
        campaign.programs = real


def _sample(text: str) -> List[str]:
    return ([s for s in text.split(",") if s] or
            sorted(p.name for p in (ROOT / "tests" / "mutants").glob("*.py")
                   if not p.name.startswith("_")))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per round and way")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--mutants", type=int, default=0, metavar="K",
                        help="also time to find mutants, seeds 0..K-1")
    parser.add_argument("--only-mutants", action="store_true")
    parser.add_argument("--mutant-budget", type=float, default=20.0)
    parser.add_argument("--sample", default="", help="mutant files (comma-separated); "
                        "default: every one")
    args = parser.parse_args(argv)
    families = tuple(args.families.split(","))
    ways = {"before": switch_graphs.programs_per_draw(families=families),
            "after": switch_graphs.programs(families=families)}
    tallies = {name: Tally() for name in ways}
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores; "
          f"families {','.join(families)}")
    if args.only_mutants:
        args.rounds = 0
    for r in range(args.rounds):
        for name, strategy in ways.items():
            draw_for(strategy, args.seconds, 1000 + r, tallies[name])
    if args.only_mutants:
        mutants_table(args.mutants, args.mutant_budget, _sample(args.sample))
        return 0
    print(f"{'':22} {'before':>12} {'after':>12}")

    def row(label: str, f: Callable[[Tally], str]) -> None:
        print(f"{label:22} {f(tallies['before']):>12} {f(tallies['after']):>12}")

    for r in range(args.rounds):
        row(f"programs/s round {r + 1}", lambda t, r=r: f"{t.rates[r]:.0f}")
    b, a = (statistics.median(tallies[w].rates) for w in ("before", "after"))
    print(f"{'speed-up (median)':22} {a / b:>25.1f}x")
    row("programs", lambda t: str(t.programs))
    row("mean greenlets", lambda t: f"{t.greenlets / t.programs:.2f}")
    row("mean ops", lambda t: f"{t.ops / t.programs:.1f}")
    row("refused by the model", lambda t: f"{t.refused / (t.programs + t.refused):.2%}")
    print("programs with an op of each family (share)")
    for fam in registry.names():
        if fam in families or fam == "core":
            row(f"  {fam}", lambda t, fam=fam: f"{t.per_family[fam] / t.programs:.1%}")
    used = sorted(genome_use(2000, families))
    print(f"genome bytes a program draws (after; 2000 random genomes): "
          f"median {used[len(used) // 2]}, p99 {used[int(len(used) * .99)]}, "
          f"max {used[-1]}; drawn in chunks of {switch_graphs.GENOME_CHUNK} bytes")
    if args.mutants:
        mutants_table(args.mutants, args.mutant_budget, _sample(args.sample))
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
