"""Running a program that ends with the interpreter's exit (family ``shutdown``).

Such a program is rendered as a whole script (``script``): the runtime, the exit
runtime (``harness/target/exit_runtime.py``), the program, and a ``__main__`` block.
``script.py --child TRACE`` runs the program as the process's own and writes its events
to ``TRACE`` as they happen; ``script.py`` alone runs itself as that child and judges it
(the standalone reproducer).  ``run`` is the executor's side: the child forked by a
zygote (``zygote.py``: the same script's start, once) or in a fresh interpreter
(``--python``), with the program's time limit (plus start-up) and the same
address-space limit as forked children.
"""

from __future__ import annotations

import os
import pprint
import sys
import tempfile
from typing import Optional, Sequence

from greenfuzz.harness.execution import render
from greenfuzz.harness.execution.runner import COMPLETED, CRASH, HANG, Observation
from greenfuzz.harness.execution.zygote import ExitZygote
from greenfuzz.harness.families.base import python_docstring
from greenfuzz.harness.families.shutdown import at_exit
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import EXIT, exit_runtime, paste, runtime
from greenfuzz.harness.target.protocol import signal_name

#: Seconds a fresh interpreter may take, beyond the program's limit, to start (import
#: the implementation) and to finish exiting.
STARTUP_ALLOWANCE = 3.0
#: Most bytes of the child's output kept in an observation.
OUTPUT_LIMIT = 8192

__all__ = ["at_exit", "run", "script"]


def script(program: Program, expected: Optional[Sequence[tuple]] = None, *, impl: str,
           want_status: int = 0, timeout: float = 2.0, title: str = "",
           details: Sequence[str] = (), source: Optional[str] = None) -> str:
    """The script a program at exit runs as, and its reproducer (``expected``: the
    model's trace, which the judging parent compares with); ``source``: the program's
    rendered source, when it is not ``program``'s (tests)."""
    doc = [f"greenfuzz reproducer: {title or 'a program that ends with the exit'}", "",
           *details, "",
           "Run: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, default "
           f"{impl!r}).",
           "It runs itself as a child (python THIS_FILE --child TRACE_FILE: the program, "
           "then the",
           "interpreter's exit) and judges it: killed by the child's signal when the child "
           "crashed,",
           "exit status 1 while the implementation differs, 0 once it agrees."]
    docstring = python_docstring(doc)
    expected_src = pprint.pformat([tuple(e) for e in expected or ()], width=96)
    impl_default = os.path.abspath(impl) if impl.endswith(".py") else impl
    return "\n".join([
        "#!/usr/bin/env python3",
        docstring,
        "",
        "# ---- greenfuzz runtime and exit runtime (harness/target/) ----",
        paste(EXIT),
        "# ---- the program ----",
        render.program_source(program) if source is None else source,
        "# ---- what a correct implementation does before the exit (greenfuzz's model) ----",
        f"EXPECTED = {expected_src}",
        f"EXIT_STATUS = {want_status!r}",
        f"TIME_LIMIT = {timeout + STARTUP_ALLOWANCE!r}",
        "",
        "",
        "if __name__ == '__main__':",
        f"    IMPL = os.environ.get('GREENFUZZ_IMPL', {impl_default!r})",
        "    if len(sys.argv) > 2 and sys.argv[1] == '--child':",
        "        sys.exit(child(program, IMPL, sys.argv[2]))",
        "    sys.exit(judge_main(EXPECTED, EXIT_STATUS, IMPL, TIME_LIMIT))",
        "",
    ])


def run(program: Program, impl: str, *, python: str = sys.executable, timeout: float = 2.0,
        memory_limit: Optional[int] = 4 << 30,
        zygote: Optional[ExitZygote] = None) -> Observation:
    """Run ``program`` in a child of ``zygote`` (an ``ExitZygote`` for the same
    implementation, interpreter and memory limit) or, without one or when it cannot be
    used, in a fresh interpreter; crashes and hangs are observations."""
    impl_path = os.path.abspath(impl) if impl.endswith(".py") else impl
    ran, how = None, "zygote"
    if zygote is not None:
        ran = zygote.run(render.program_source(program), timeout + STARTUP_ALLOWANCE)
    if ran is None:
        how = "fresh"
        fd, path = tempfile.mkstemp(prefix="greenfuzz-exit-", suffix=".py")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(script(program, impl=impl_path, timeout=timeout))
            ran = exit_runtime.run_child(path, impl_path, python, timeout + STARTUP_ALLOWANCE,
                                         memory_limit)
        finally:
            os.unlink(path)
    text, code, output, seconds = ran
    tail = output[-OUTPUT_LIMIT:]
    extra = {"at_exit": True, "status": code, "output": tail,
             "interpreter": how}
    if code is None:
        return Observation(trace=exit_runtime.parse_output(text, runtime.decode_trace),
                           outcome=HANG, seconds=seconds, extra=extra,
                           detail=f"the process did not exit within "
                                  f"{timeout + STARTUP_ALLOWANCE:g} s; killed\n{tail}")
    trace = exit_runtime.parse_output(text, runtime.decode_trace)
    if code < 0:
        extra["signum"] = -code
        extra["signal"] = signal_name(-code)
        return Observation(trace=trace, outcome=CRASH, seconds=seconds, extra=extra,
                           detail=f"killed by {extra['signal']} ({-code}) at exit\n{tail}")
    return Observation(trace=trace, outcome=COMPLETED, seconds=seconds, extra=extra)
