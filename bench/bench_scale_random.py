#!/usr/bin/env python
"""The random scale shape, checked by the reference model as it runs, against the same
stream run unchecked: same recipe, same run of this script.

    .venv/bin/python bench/bench_scale_random.py                       # 10^6 greenlets
    .venv/bin/python bench/bench_scale_random.py --greenlets 100000    # quicker

Two fresh processes, one after the other, each running ``greenfuzz.harness.search.scale
.run_recipe`` on the recipe: ``unchecked`` (the target performs the stream and records
nothing) and ``checked`` (the target sends its events in batches that the model, in the
harness process, checks while the next batch runs).  Reported: wall time and top-level
operations per second of each; peak RSS of the target and of the harness process.  The
unchecked run's memory is its target's alone (it needs no harness), the checked run's is
the target's plus the harness's (the model): the ratio is the strict one.  Targets (issue
16): checked wall at most 3x, checked peak RSS at most 1.5x.  The machine's load average
is printed with the figures: the checked run uses two processes at once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(mode: str, recipe_json: str, impl: str) -> None:
    """Run the recipe in this process's child; print what it measured as one JSON line."""
    from greenfuzz.harness.program.recipes import Recipe
    from greenfuzz.harness.search import scale

    recipe = Recipe(**json.loads(recipe_json))
    start = time.perf_counter()
    result = scale.run_recipe(recipe, impl, checked=(mode == "checked"), stall=600)
    wall = time.perf_counter() - start
    harness = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "outcome": result.outcome, "finding": result.finding,
                      "detail": result.detail[:500], "wall": wall, "done": result.done,
                      "harness_peak_rss": harness}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--greenlets", type=int, default=1_000_000)
    parser.add_argument("--operations", type=int, default=0, help="default 5 per greenlet")
    parser.add_argument("--live", type=int, default=0)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--impl", default="greenlet")
    parser.add_argument("--one", choices=("checked", "unchecked"), help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.recipe, args.impl)
        return 0
    from greenfuzz.harness.program.recipes import Recipe

    recipe = Recipe("random", args.greenlets, depth=args.depth, seed=args.seed,
                    operations=args.operations, live=args.live)
    print(f"recipe: {recipe}", flush=True)
    rows = {}
    for mode in ("unchecked", "checked"):
        load = os.getloadavg()
        done = subprocess.run([sys.executable, __file__, "--one", mode, "--recipe",
                               json.dumps(recipe.to_json()), "--impl", args.impl],
                              capture_output=True, text=True, timeout=3600, cwd=ROOT)
        if done.returncode != 0:
            print(done.stdout, done.stderr[-3000:])
            return 3
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["load_before"] = load
        rows[mode] = row
        target = row["done"].get("peak_rss", 0)
        total = target + (row["harness_peak_rss"] if mode == "checked" else 0)
        row["total_peak_rss"] = total
        ops = row["done"].get("operations", 0)
        print(f"{mode:>9}: {row['outcome']}, {ops:,} operations in {row['wall']:.1f} s "
              f"({ops / row['wall']:,.0f}/s), {row['done'].get('checked_events', 0):,} "
              f"events checked, peak {row['done'].get('peak_live', 0):,} alive; peak RSS "
              f"target {target / 2**20:,.0f} MiB, harness "
              f"{row['harness_peak_rss'] / 2**20:,.0f} MiB; load average before "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        if row["finding"]:
            print("  finding:", row["finding"])
    checked, unchecked = rows["checked"], rows["unchecked"]
    print(f"wall: checked {checked['wall'] / unchecked['wall']:.2f}x unchecked (target 3x); "
          f"peak RSS: checked {checked['total_peak_rss'] / unchecked['total_peak_rss']:.2f}x "
          f"unchecked (target 1.5x); load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
