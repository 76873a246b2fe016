#!/usr/bin/env python
"""Bytes per parked greenlet: a plain hand-written script vs
greenfuzz.harness.target.rawmemory.measure_parked.

Run on demand::

    .venv/bin/python bench/bench_memory.py                    # 10k/50k/100k, python:0 and c:10
    .venv/bin/python bench/bench_memory.py --counts 20000 --config c:10 --metric anon

For every configuration (``via:depth``) and count N, one fresh subprocess runs a
plain greenlet script (``greenfuzz profile``'s, no harness code: gc.collect,
malloc_trim, psutil USS, park N greenlets, measure again) and another fresh
subprocess runs ``measure_parked(impl, [N], depth, via)`` (``harness/target/__main__.py
parked``).  Both report bytes per parked
greenlet as (metric after parking - metric before) / N; the table prints both
and their ratio.  Every subprocess has a timeout.  The exit status is 1 when a
ratio is outside ``1 +- --tolerance`` (default 10 %) or a run failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Tuple

from greenfuzz.harness.reporting import memprofile
from greenfuzz.harness.reporting.memprofile import HARNESS, PLAIN


def run_child(script: Tuple[str, ...], job: Dict[str, Any],
              timeout: float) -> Tuple[Dict[str, Any], float]:
    """Run ``memprofile.PLAIN`` or ``memprofile.HARNESS`` with ``job`` in a fresh
    interpreter; (its JSON result, or ``{"error": ...}``; seconds).  The harness's
    ``per_greenlet`` (one per count) becomes one number, as the plain script's."""
    start = time.perf_counter()
    result = memprofile._run(sys.executable, script, job, timeout)
    elapsed = time.perf_counter() - start
    if isinstance(result.get("per_greenlet"), list):
        result["per_greenlet"] = result["per_greenlet"][0]
    return result, elapsed


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
            job = {"impl": args.impl, "metric": args.metric, "depth": depth, "via": via}
            plain, t_plain = run_child(PLAIN, dict(job, n=n), args.timeout)
            harness, t_harness = run_child(HARNESS, dict(job, counts=[n]), args.timeout)
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
