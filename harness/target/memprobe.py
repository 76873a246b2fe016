"""The raw-memory probe that runs next to the implementation (worker child or reproducer).

``greenfuzz.harness.judging.memcheck`` pastes this file after the runtime, ``memory`` and
``rawmemory`` (``greenfuzz.harness.target.MEMORY``) and a fuzzed program, so it uses only
the standard library, their names and the runtime's ``Tracer`` (passed in), and runs on
CPython 3.9+.  ``raw_probe`` repeats the program with a fresh ``Tracer`` each time and
applies rawmemory's leak rule, stopping early once the growth passes ``cap_bytes`` (a
leak that large is not in doubt, and the child has a memory limit).
"""

from .rawmemory import check_raw_leak


def raw_probe(program, gl, tracer_cls, per_batch=0, batches=8, warmup=2, metric="anon",
              batch_seconds=0.05, min_per_batch=20, max_per_batch=1000,
              cap_bytes=256 << 20):
    """Run ``program(gl, T)`` in batches and judge the growth; a dict of plain data.

    ``per_batch`` 0 sizes batches to take about ``batch_seconds`` each.
    """
    import sys
    import time

    started = [0]
    old_hook = getattr(sys, "unraisablehook", None)

    def ignore(unraisable):
        """An exception a finalizer ignores, dropped with the run: reported to the hook
        of the run that called the probe, it stayed in that run's trace, one event a
        run, a growth of the harness's own (+128 B a run where a finalizer threw into
        main every run; its reproducer, which printed them, grew by nothing)."""

    def once():
        T = tracer_cls(gl)
        if old_hook is not None:
            sys.unraisablehook = ignore
        try:
            program(gl, T)
            T.teardown()
        except BaseException:
            pass
        finally:
            if old_hook is not None:
                sys.unraisablehook = old_hook
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

    verdict = check_raw_leak(workload, per_batch=per_batch, warmup=warmup, batches=batches,
                             metric=metric, cap_bytes=cap_bytes)
    return {
        "leaked": verdict.leaked,
        "bytes_per_iteration": verdict.bytes_per_iteration,
        "threshold": verdict.threshold,
        "floor": verdict.floor,
        "noise": verdict.noise,
        "rising": verdict.rising,
        "rising_needed": verdict.rising_needed,
        "per_batch": per_batch,
        "batches": len(verdict.samples) - 1,
        "metric": verdict.metric,
        "reliable": verdict.reliable,
        "reason": verdict.reason,
        "trimmed": verdict.trimmed,
        "values": list(verdict.values),
        "starts_per_run": started[0],
        "seconds_per_run": per_run,
        "summary": verdict.summary(),
    }

