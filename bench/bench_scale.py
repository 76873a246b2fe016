#!/usr/bin/env python
"""Scale: the harness's checked runs against plain hand-written greenlet scripts, same run.

Run on demand (the defaults are the targets of issue #6; about 5 minutes, 7 GB)::

    .venv/bin/python bench/bench_scale.py
    .venv/bin/python bench/bench_scale.py --parked 100000 --waves 1000000   # quicker

Rows, each a fresh process for the plain script and for the harness
(``harness/target/scale_runtime.py``), measured one after the other:

* ``ring``: a token passed around ``--ring`` greenlets ``--rounds`` times; the harness
  checks every value.  Target: checked switches/s at least 0.5 of plain.
* ``parked``: park ``--parked`` greenlets, then finish the even ones and kill the odd ones
  by dropping them (in creation order).  Targets: wall time within 1.5x, peak RSS within
  1.2x of plain.
* ``waves``: ``--waves`` short-lived greenlets, 1000 alive at a time.  Target: peak RSS
  stays near the live set's (the harness also fails the run if RSS grows with the total).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Runs the scale runtime as the harness does: ``__main__.py scale IMPL RECIPE``.
ENTRY = os.path.join(ROOT, "harness", "target", "__main__.py")

PLAIN_RING = """
import greenlet, sys, time
n, rounds = int(sys.argv[1]), int(sys.argv[2])
main = greenlet.getcurrent()
ring = [None] * n
def member(i):
    v = main.switch()
    for r in range(rounds):
        v = (ring[i + 1] if i + 1 < n else main).switch(v + 1)
for i in range(n):
    ring[i] = greenlet.greenlet(member)
    ring[i].switch(i)
t = time.perf_counter()
for r in range(rounds):
    ring[0].switch(r * n)
print(n * rounds / (time.perf_counter() - t))
"""

PLAIN_PARKED = """
import greenlet, sys
n = int(sys.argv[1])
main = greenlet.getcurrent()
def body(i):
    main.switch(i)
    return i
gs = [None] * n
for i in range(n):
    g = greenlet.greenlet(body)
    g.switch(i)
    gs[i] = g
for i in range(n):
    if i & 1:
        gs[i] = None
    else:
        g, gs[i] = gs[i], None
        g.switch()
        del g
"""

PLAIN_WAVES = """
import greenlet, sys
n = int(sys.argv[1])
done = 0
while done < n:
    batch = [greenlet.greenlet(lambda i: i * 2) for _ in range(min(1000, n - done))]
    for k, g in enumerate(batch):
        g.switch(done + k)
    done += len(batch)
    del batch, g
"""


def run(argv: List[str]) -> Tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) of that process alone, stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out


def plain(script: str, *args: int) -> Tuple[float, int, str]:
    return run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)])


def harness(recipe: Dict[str, object]) -> Tuple[float, int, List[dict]]:
    wall, rss, out = run([sys.executable, ENTRY, "scale", "greenlet", json.dumps(recipe)])
    lines = [json.loads(line) for line in out.splitlines()]
    if any("finding" in line for line in lines):
        raise SystemExit(f"the harness reported a finding on greenlet: {lines[-1]}")
    return wall, rss, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ring", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--parked", type=int, default=1_000_000)
    parser.add_argument("--waves", type=int, default=10_000_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          "ratios are harness / plain")

    _, _, out = plain(PLAIN_RING, args.ring, args.rounds)
    raw_rate = float(out)
    _, _, lines = harness({"shape": "ring", "greenlets": args.ring, "rounds": args.rounds,
                           "sample": 10**9})
    (ring,) = [line for line in lines if line.get("phase") == "ring"]
    checked = ring["switches_per_second"]
    print(f"ring {args.ring} x {args.rounds}: plain {raw_rate:,.0f} switches/s, checked "
          f"{checked:,.0f} switches/s, ratio {checked / raw_rate:.2f} (target >= 0.5)")

    p_wall, p_rss, _ = plain(PLAIN_PARKED, args.parked)
    h_wall, h_rss, lines = harness({"shape": "parked", "greenlets": args.parked,
                                    "rounds": 0})
    print(f"parked {args.parked:,}: plain {p_wall:.1f} s / {p_rss / 2**20:,.0f} MiB, "
          f"harness {h_wall:.1f} s / {h_rss / 2**20:,.0f} MiB; wall ratio "
          f"{h_wall / p_wall:.2f} (target <= 1.5), peak RSS ratio {h_rss / p_rss:.2f} "
          "(target <= 1.2)")

    w_wall, w_rss, _ = plain(PLAIN_WAVES, args.waves)
    hw_wall, hw_rss, lines = harness({"shape": "waves", "greenlets": args.waves,
                                      "wave": 1000})
    (waves,) = [line for line in lines if line.get("phase") == "waves"]
    print(f"waves {args.waves:,} (1000 live): plain {w_wall:.1f} s / "
          f"{w_rss / 2**20:,.0f} MiB, harness {hw_wall:.1f} s / {hw_rss / 2**20:,.0f} MiB; "
          f"RSS growth after warm-up {waves['rss_growth'] / 2**20:+.1f} MiB; wall ratio "
          f"{hw_wall / w_wall:.2f}, peak RSS ratio {hw_rss / w_rss:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
