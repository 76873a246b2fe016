#!/usr/bin/env python
"""False positives and detection of fuzzing's raw-memory check, measured on demand.

    .venv/bin/python bench/bench_memcheck.py                 # 120 s per implementation
    .venv/bin/python bench/bench_memcheck.py --budget 300 --seed 7

Runs a campaign on each implementation with a raw-memory probe after every batch of 5
programs (``memory_share`` 1, ``keep_going``) and prints how many probes ran and how
many reported a leak: on the installed greenlet every report is a false positive; on
``tests/mutants/leak_256k.py`` every probe of a program that starts a greenlet should
report one.  The exit status is 1 when greenlet got a raw-memory finding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from greenfuzz.harness.execution import implementations
from greenfuzz.harness.search.campaign import CampaignConfig, run_campaign

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--impl", action="append", default=None)
    args = parser.parse_args()
    specs = args.impl or ["greenlet", str(ROOT / "tests" / "mutants" / "leak_256k.py")]
    false_positive = False
    for spec in specs:
        impl = implementations.load(spec)
        with tempfile.TemporaryDirectory() as out:
            config = CampaignConfig(impl=impl, out=Path(out), budget=args.budget,
                                    seed=args.seed, batch=5, memory_share=1.0,
                                    keep_going=True, verify=False, families=("core",))
            start = time.monotonic()
            result = run_campaign(config)
            elapsed = time.monotonic() - start
        raw = [f for f in result.findings if f.verdict.signature.startswith("leak:")]
        print(f"{spec}: {result.examples} programs, {result.memory_checks} memory checks "
              f"({result.memory_seconds:.0f} of {elapsed:.0f} s), "
              f"{len(raw)} memory finding(s) {[f.verdict.signature for f in raw]}")
        for finding in raw:
            print("   ", finding.verdict.summary.splitlines()[0])
        if spec == "greenlet" and raw:
            false_positive = True
    return 1 if false_positive else 0


if __name__ == "__main__":
    sys.exit(main())
