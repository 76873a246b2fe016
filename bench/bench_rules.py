#!/usr/bin/env python
"""Rule coverage: how often each rule of the model fires in N drawn programs per family,
and which never fire.

Run on demand::

    .venv/bin/python bench/bench_rules.py                 # 1,000 programs per family
    .venv/bin/python bench/bench_rules.py --count 10000   # what the issue asks (minutes)

Programs are decoded from random genomes (``greenfuzz.strategies.switch_graphs.decode``,
what ``programs()`` draws, without Hypothesis around it) for each family on its own and
for all families together, and predicted by the model (``predict(program, fired)``).
Rules are named by ``greenfuzz.harness.model.rules()``: ``core:<branch>`` and
``op:<type>``.  Programs the model refuses (after taming) are counted apart.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from typing import List, Optional, Tuple

from hypothesis.errors import UnsatisfiedAssumption

from greenfuzz.harness import families as registry
from greenfuzz.harness.model import ModelError, predict, rules
from greenfuzz.strategies.switch_graphs import GENOME_BYTES, decode

#: Programs the model failed on (``ModelError``: a greenfuzz bug), as JSON.
MODEL_ERRORS: List[str] = []


def coverage(families: Tuple[str, ...], count: int, rng: random.Random) -> Tuple[Counter, int]:
    """Rule counts over ``count`` programs of ``families`` (and how many were refused);
    programs the model fails on go to ``MODEL_ERRORS``."""
    fired: Counter = Counter()
    refused = done = 0
    while done < count:
        genome = rng.randbytes(GENOME_BYTES)
        try:
            program = decode(genome, families=families)
        except UnsatisfiedAssumption:
            refused += 1
            continue
        try:
            predict(program, fired)
        except ModelError as e:
            MODEL_ERRORS.append(f"{e}: {program.dumps()}")
        done += 1
    return fired, refused


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="programs per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print every rule's count")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.count} programs per family")
    every = rules()
    total: Counter = Counter()
    runs = [(name,) for name in registry.names()] + [()]
    for fams in runs:
        start = time.perf_counter()
        fired, refused = coverage(fams, args.count, rng)
        total.update(fired)
        label = fams[0] if fams else "all"
        never = [r for r in every if not fired[r]]
        print(f"\n{label}: {args.count / (time.perf_counter() - start):.0f} programs/s, "
              f"{refused} refused; {len(every) - len(never)}/{len(every)} rules fired; "
              f"never: {', '.join(never) or '-'}")
    never = [r for r in every if not total[r]]
    print(f"\nover all runs, never fired: {', '.join(never) or '-'}")
    print(f"model errors (greenfuzz bugs): {len(MODEL_ERRORS)}")
    for text in MODEL_ERRORS[:3]:
        print(f"  {text}")
    if args.table:
        for rule in every:
            print(f"  {rule:40} {total[rule]:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
