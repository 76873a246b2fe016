#!/usr/bin/env python
"""Bytes per parked greenlet: a plain hand-written script vs
greenfuzz.harness.target.rawmemory.measure_parked.

Run on demand::

    .venv/bin/python bench/bench_memory.py                    # 10k/50k/100k, python:0 and c:10
    .venv/bin/python bench/bench_memory.py --counts 20000 --config c:10 --metric anon

For every configuration (``via:depth``) and count N, one fresh subprocess runs a
plain greenlet script (no harness code: gc.collect, malloc_trim, psutil USS,
park N greenlets, measure again) and another fresh subprocess runs
``measure_parked(impl, [N], depth, via)``.  Both report bytes per parked
greenlet as (metric after parking - metric before) / N; the table prints both
and their ratio.  Every subprocess has a timeout.  The exit status is 1 when a
ratio is outside ``1 +- --tolerance`` (default 10 %) or a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The plain script: hand-written, independent of the harness on purpose.
PLAIN = r"""
import ctypes, gc, importlib, json, sys
import psutil

impl = importlib.import_module(sys.argv[1])
n, depth, via, metric = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
libc = ctypes.CDLL(None)
proc = psutil.Process()
main = impl.getcurrent()

def anon():
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Anonymous:", "Swap:")):
                total += int(line.split()[1]) * 1024
    return total

def measure():
    gc.collect()
    libc.malloc_trim(0)
    if metric == "anon":
        return anon()
    if metric == "rss":
        return proc.memory_info().rss
    return proc.memory_full_info().uss

def f(k):
    if k:
        if via == "c":
            list(map(f, [k - 1]))
        else:
            f(k - 1)
    else:
        main.switch()

before = measure()
parked = []
for _ in range(n):
    g = impl.greenlet(f)
    g.switch(depth)
    parked.append(g)
g = None
after = measure()
for i in range(n):
    parked[i] = None
print(json.dumps({"delta": after - before, "per_greenlet": (after - before) / n}))
"""

HARNESS = r"""
import importlib, json, sys
from greenfuzz.harness.target.rawmemory import measure_parked

impl = importlib.import_module(sys.argv[1])
n, depth, via, metric = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
fit = measure_parked(impl, [n], depth=depth, via=via, metric=metric)
print(json.dumps({
    "delta": fit.deltas[0], "per_greenlet": fit.slope, "metric": fit.metric,
    "reliable": fit.reliable, "reason": fit.reason, "exits": fit.exits, "parked": fit.parked,
}))
"""


def run_child(code: str, argv: List[str], timeout: float) -> Tuple[Dict[str, Any], float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}, time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}, elapsed
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed
    except (ValueError, IndexError):
        return {"error": f"unparsable output: {proc.stdout[-200:]!r}"}, elapsed


def parse_config(text: str) -> Tuple[str, int]:
    via, _, depth = text.partition(":")
    if via not in ("python", "c") or not depth.isdigit():
        raise argparse.ArgumentTypeError(f"config must look like python:0 or c:10, not {text!r}")
    return via, int(depth)


def available_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return None


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="10000,50000,100000", help="comma-separated N")
    ap.add_argument(
        "--config",
        action="append",
        type=parse_config,
        help="via:depth, repeatable (default: python:0 and c:10)",
    )
    ap.add_argument("--metric", choices=("uss", "anon", "rss"), default="uss")
    ap.add_argument("--impl", default="greenlet", help="module with the greenlet API")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per subprocess")
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed |ratio - 1|")
    ap.add_argument(
        "--max-kib-per-greenlet",
        type=float,
        default=48.0,
        help="memory estimate used to skip counts that would not fit in available RAM",
    )
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    configs = args.config or [("python", 0), ("c", 10)]

    print(f"python {sys.version.split()[0]}, impl {args.impl}, metric {args.metric}")
    header = (
        f"{'config':>10} {'N':>8} {'plain B/gr':>11} {'harness B/gr':>13} {'ratio':>7} "
        f"{'plain s':>8} {'harness s':>9}  note"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for via, depth in configs:
        for n in counts:
            label = f"{via}:{depth}"
            avail = available_bytes()
            need = n * args.max_kib_per_greenlet * 1024
            if avail is not None and need > 0.8 * avail:
                print(
                    f"{label:>10} {n:>8} {'-':>11} {'-':>13} {'-':>7} {'-':>8} {'-':>9}  "
                    f"skipped: may need {need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
                )
                continue
            child_argv = [args.impl, str(n), str(depth), via, args.metric]
            plain, t_plain = run_child(PLAIN, child_argv, args.timeout)
            harness, t_harness = run_child(HARNESS, child_argv, args.timeout)
            notes = [r["error"] for r in (plain, harness) if "error" in r]
            if "error" not in harness:
                if not harness.get("reliable", True):
                    notes.append("UNRELIABLE: " + harness.get("reason", ""))
                if harness.get("exits") != harness.get("parked"):
                    notes.append(f"GreenletExit {harness.get('exits')}/{harness.get('parked')}")
            if "error" in plain or "error" in harness:
                failed = True
                p_txt = "-" if "error" in plain else f"{plain['per_greenlet']:.0f}"
                h_txt = "-" if "error" in harness else f"{harness['per_greenlet']:.0f}"
                r_txt = "-"
            else:
                ratio = harness["per_greenlet"] / plain["per_greenlet"]
                if abs(ratio - 1.0) > args.tolerance:
                    failed = True
                    notes.append(f"ratio outside 1+-{args.tolerance:g}")
                p_txt = f"{plain['per_greenlet']:.0f}"
                h_txt = f"{harness['per_greenlet']:.0f}"
                r_txt = f"{ratio:.3f}"
            print(
                f"{label:>10} {n:>8} {p_txt:>11} {h_txt:>13} {r_txt:>7} "
                f"{t_plain:>8.1f} {t_harness:>9.1f}  {'; '.join(notes)}",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
