"""Raw-memory checks while fuzzing: repeated programs, and bytes per parked greenlet.

Object counts and weak references miss memory an implementation allocates outside
Python objects, so on a sample of programs (see ``campaign``) the program is repeated
many times next to the implementation (in the worker's child, or in this process with
``--in-process``) and the process's memory is judged with
``greenfuzz.harness.target.rawmemory``'s rule.  The code that runs there is generated:
the target modules ``greenfuzz.harness.target.MEMORY`` pasted (the runtime, ``memory``,
``rawmemory``, ``memprobe``) and the program, so it needs nothing but the standard
library (psutil where installed) and works under ``--python`` too; a finding's
reproducer is the same code with a ``main`` that prints the growth of every batch.

Once per campaign the implementation's bytes per parked greenlet are fitted too
(``rawmemory.measure_parked``) and compared with a budget: an implementation whose
suspended greenlets cost far more than greenlet's is a finding.
"""

from __future__ import annotations

import pprint
import textwrap
from typing import Any, Dict, Optional, Sequence, Tuple

from greenfuzz.harness.execution import render, runner
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.execution.implementations import Implementation
from greenfuzz.harness.families.base import python_docstring
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import MAIN, Program
from greenfuzz.harness.target import MEMORY, paste, runtime

_HEADER = "def program(gl, T):\n"

#: Default budget of bytes per parked greenlet (``--parked-budget``).  greenlet 3.5.6
#: parks a greenlet suspended at depth 0 in 5.7-6.1 KiB of anonymous memory on CPython
#: 3.11 (2.0.1 in 5.6 KiB; ``greenfuzz profile`` measures any release), the thread-based
#: ``harness/envs/threaded_greenlet.py`` in about 16 KiB; 32 KiB leaves room for other
#: interpreters and designs and still catches an implementation that, say, commits a
#: whole stack per greenlet.
PARKED_BUDGET = 32 * 1024
#: Greenlets parked per point of the fit in the campaign's budget check.
PARKED_COUNTS = (500, 1000, 2000)
#: Seconds one memory probe may take in the worker before it counts as hung.
PROBE_TIMEOUT = 60.0
#: Seconds the parked-greenlet check may take (it aims at a few).
PARKED_TIMEOUT = 20.0


def _kwargs(params: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))


def probe_source(program: Program, **params: Any) -> str:
    """``def program(gl, T)`` that repeats ``program`` under the leak rule and records the
    result as one ``memory`` event (``params`` go to ``memprobe.raw_probe``).

    Each run gets a ``Tracer`` of the pasted runtime, as in the reproducer: the caller's
    ``T`` belongs to another copy of it (the worker's), whose ``Unbound`` the program's
    ``except Unbound`` does not catch.  Runs with ``type(T)`` behaved differently from
    the program judged before (a greenlet fewer started) and grew by 15.6 KB a run, a
    leak the reproducer never showed."""
    inner = render.program_source(program)
    assert inner.startswith(_HEADER), inner[:40]
    inner = "def fuzz_program(gl, T):\n" + inner[len(_HEADER):]
    return "\n".join([
        paste(MEMORY), inner,
        _HEADER + f"    T.rec('main', -1, 'memory', raw_probe(fuzz_program, gl, Tracer, "
                  f"{_kwargs(params)}))\n",
    ])


def parked_source(counts: Sequence[int], depth: int = 0, via: str = "python",
                  seconds: float = 5.0) -> str:
    """``def program(gl, T)`` that fits bytes per parked greenlet and records it as one
    ``memory`` event.  A trial with 50 greenlets first scales ``counts`` down (to 50 at
    least) so that the fit takes about ``seconds`` on slow implementations."""
    return "\n".join([
        paste(MEMORY), _HEADER + textwrap.indent(textwrap.dedent(f"""\
            import time
            counts = {tuple(counts)!r}
            t0 = time.perf_counter()
            measure_parked(gl, (50,), depth={depth!r}, via={via!r}, metric="anon")
            per = (time.perf_counter() - t0) / 50
            scale = min(1.0, {seconds!r} / max(1e-9, per * sum(counts)))
            counts = tuple(max(50, int(n * scale)) for n in counts)
            fit = measure_parked(gl, counts, depth={depth!r}, via={via!r},
                                 metric="anon")
            T.rec("main", -1, "memory", {{
                "slope": fit.slope, "intercept": fit.intercept, "counts": list(fit.counts),
                "deltas": list(fit.deltas), "residuals": list(fit.residuals),
                "metric": fit.metric, "reliable": fit.reliable, "reason": fit.reason,
                "exits": fit.exits, "parked": fit.parked, "summary": fit.summary()}})
            """), "    "),
    ])


def run_memory_source(source: str, impl: Implementation,
                      executor: Optional[IsolatedExecutor],
                      timeout: float = PROBE_TIMEOUT) -> Tuple[Optional[Dict[str, Any]],
                                                               runner.Observation]:
    """Run a probe source where programs run; (its ``memory`` result or None, the
    observation)."""
    if executor is not None:
        observation = executor.run_source(source, timeout, fresh=True)
    else:
        code = compile(source, "<greenfuzz memory probe>", "exec")
        trace = runtime.execute(runtime.define_program(code), impl.module)
        observation = runner.Observation(trace=trace)
    for who, _, kind, payload in observation.trace:
        if who == MAIN and kind == "memory" and isinstance(payload, dict):
            return payload, observation
    return None, observation


def raw_verdict(result: Dict[str, Any]) -> checks.Verdict:
    """``ok``, or a ``leak`` saying how much a run of the program leaks."""
    if not result.get("leaked"):
        return checks.Verdict(checks.OK)
    per_run = float(result["bytes_per_iteration"])
    starts = int(result.get("starts_per_run") or 0)
    per_greenlet = f", about {per_run / starts:,.0f} B per started greenlet" if starts else ""
    summary = (f"raw memory leak: {per_run:+,.0f} B per run of this program{per_greenlet} "
               f"({result['metric']}, threshold {float(result['threshold']):,.0f} B; "
               f"{result['rising']}/{result['batches']} batches of {result['per_batch']} runs "
               f"grew)\n  {result.get('summary', '')}")
    return checks.Verdict(checks.LEAK, summary, None, f"{checks.LEAK}:raw")


def parked_verdict(result: Dict[str, Any], budget: float) -> checks.Verdict:
    """``ok``, or a ``leak`` finding (signature ``leak:parked``) when a parked greenlet
    costs more than ``budget`` bytes."""
    slope = float(result.get("slope") or 0.0)
    if not result.get("reliable", True) or slope <= budget:
        return checks.Verdict(checks.OK)
    summary = (f"memory per parked greenlet over budget: {slope:,.0f} B per greenlet "
               f"(budget {budget:,.0f} B)\n  {result.get('summary', '')}")
    return checks.Verdict(checks.LEAK, summary, None, f"{checks.LEAK}:parked")


def is_raw(verdict: checks.Verdict) -> bool:
    return verdict.signature in (f"{checks.LEAK}:raw", f"{checks.LEAK}:parked")


def reproducer(program: Program, verdict: checks.Verdict, observation: runner.Observation, *,
               impl: str, title: str, details: Sequence[str]) -> str:
    """A standalone script for a raw-memory finding: it repeats the measurement, prints
    the growth of every batch and exits 1 while the leak (or the overspend) is there."""
    result = next((p for w, _, k, p in observation.trace
                   if w == MAIN and k == "memory" and isinstance(p, dict)), {})
    doc = [f"greenfuzz reproducer: {title}", "", *details, "",
           "Run: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, default "
           f"{impl!r}).",
           "Exit status 1 while memory still grows (or a parked greenlet still costs more "
           "than the budget), 0 once it does not."]
    docstring = python_docstring(doc)
    if verdict.signature == f"{checks.LEAK}:parked":
        budget = float(result.get("budget") or PARKED_BUDGET)
        counts = tuple(result.get("counts") or PARKED_COUNTS)
        check = [
            "    fit = measure_parked(gl, %r, depth=0, via='python', metric='anon')" % (counts,),
            "    for n, d in zip(fit.counts, fit.deltas):",
            "        print('%7d parked: %+9.2f MiB (%.0f B each)' % (n, d / MIB, d / n))",
            "    print(fit.summary())",
            f"    print('budget: {budget:.0f} B per parked greenlet')",
            f"    return 1 if fit.reliable and fit.slope > {budget!r} else 0",
        ]
        program_code = ""
    else:
        params = {"per_batch": int(result.get("per_batch") or 0)}
        check = [
            f"    result = raw_probe(program, gl, Tracer, {_kwargs(params)})",
            "    values = result['values']",
            "    print('%s after each batch of %d runs (baseline first):' % (",
            "        result['metric'], result['per_batch']))",
            "    for i, v in enumerate(values):",
            "        grown = v - values[i - 1] if i else 0",
            "        print('  batch %d: %10.2f MiB  %+9.1f KiB' % (i, v / MIB, grown / 1024))",
            "    print(result['summary'])",
            "    print('greenlets started per run: %d' % result['starts_per_run'])",
            "    if result['leaked']:",
            "        _traced(gl, result['per_batch'])",
            "    return 1 if result['leaked'] else 0",
            "",
            "",
            "def _traced(gl, runs):",
            "    # How much of the growth Python's allocator sees, and from which lines",
            "    # (memory that C code mallocs itself is invisible to tracemalloc).",
            "    import tracemalloc",
            "",
            "    def once():",
            "        T = Tracer(gl)",
            "        try:",
            "            program(gl, T)",
            "            T.teardown()",
            "        except BaseException:",
            "            pass",
            "",
            "    tracemalloc.start(5)",
            "    once()",
            "    settle()",
            "    before = tracemalloc.take_snapshot()",
            "    for _ in range(runs):",
            "        once()",
            "    settle()",
            "    mine = [tracemalloc.Filter(False, tracemalloc.__file__)]",
            "    stats = tracemalloc.take_snapshot().filter_traces(mine).compare_to(",
            "        before.filter_traces(mine), 'lineno')",
            "    tracemalloc.stop()",
            "    grown = sum(s.size_diff for s in stats)",
            "    print('tracemalloc: %+.1f B per run allocated through Python (the rest of the '",
            "          'growth is memory C code allocated itself)' % (grown / runs))",
            "    for stat in [s for s in stats if s.size_diff > 0][:5]:",
            "        print('   ', stat)",
        ]
        program_code = render.program_source(program)
    parts = [
        "#!/usr/bin/env python3", docstring, "",
        paste(MEMORY),
        "# ---- the program ----", program_code,
        f"MEASURED = {pprint.pformat(result, width=96)}", "", "",
        "def _main():",
        "    import os",
        f"    gl = load_implementation(os.environ.get('GREENFUZZ_IMPL', {impl!r}))",
        "    gc.disable()  # as in greenfuzz's runs: settle() collects between batches",
        *check, "", "",
        "if __name__ == '__main__':",
        "    sys.exit(_main())",
    ]
    return "\n".join(parts) + "\n"
