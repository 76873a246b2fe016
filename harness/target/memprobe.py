"""The raw-memory probe that runs next to the implementation (worker child or reproducer).

``greenfuzz.harness.judging.memcheck`` pastes everything below the ``---- probe ----`` line after
the body
of ``harness/target/rawmemory.py`` and a fuzzed program, so this code may use only the standard
library, rawmemory's names and the runtime's ``Tracer`` (passed in), and must run on
CPython 3.9+.  ``raw_probe`` repeats the program with a fresh ``Tracer`` each time and
applies rawmemory's leak rule, stopping early once the growth passes ``cap_bytes`` (a
leak that large is not in doubt, and the child has a memory limit).
"""

from __future__ import annotations

from greenfuzz.harness.target.rawmemory import _sample, judge, process_memory, settle

# ---- probe ----


def raw_probe(program, gl, tracer_cls, per_batch=0, batches=8, warmup=2, metric="anon",
              batch_seconds=0.05, min_per_batch=20, max_per_batch=1000,
              cap_bytes=256 << 20):
    """Run ``program(gl, T)`` in batches and judge the growth; a dict of plain data.

    ``per_batch`` 0 sizes batches to take about ``batch_seconds`` each.
    """
    import time

    started = [0]

    def once():
        T = tracer_cls(gl)
        try:
            program(gl, T)
            T.teardown()
        except BaseException:
            pass
        started[0] = sum(1 for e in T.events if e[2] == "start" and e[0] != "main")

    t0 = time.perf_counter()
    runs = 0
    while runs < 3 or time.perf_counter() - t0 < 0.02:
        once()
        runs += 1
    per_run = (time.perf_counter() - t0) / runs
    if not per_batch:
        per_batch = int(min(max_per_batch, max(min_per_batch, batch_seconds / per_run)))

    def workload(n):
        for _ in range(n):
            once()

    warm = []
    for _ in range(warmup):
        workload(per_batch)
        warm.append(_sample())
    trimmed = settle()
    samples = [process_memory()]
    first = samples[0]
    for _ in range(batches):
        workload(per_batch)
        samples.append(_sample())
        grown = samples[-1].rss - first.rss
        if len(samples) >= 4 and grown > cap_bytes:
            break
    verdict = judge(samples, per_batch=per_batch, warmup_samples=warm, metric=metric,
                    trimmed=trimmed)
    return {
        "leaked": verdict.leaked,
        "bytes_per_iteration": verdict.bytes_per_iteration,
        "threshold": verdict.threshold,
        "floor": verdict.floor,
        "noise": verdict.noise,
        "rising": verdict.rising,
        "rising_needed": verdict.rising_needed,
        "per_batch": per_batch,
        "batches": len(samples) - 1,
        "metric": verdict.metric,
        "reliable": verdict.reliable,
        "reason": verdict.reason,
        "trimmed": trimmed,
        "values": list(verdict.values),
        "starts_per_run": started[0],
        "seconds_per_run": per_run,
        "summary": verdict.summary(),
    }


__all__ = ["raw_probe"]
