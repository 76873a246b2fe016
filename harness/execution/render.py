"""Programs as Python source.

The runner executes exactly the code a reproducer contains: ``program_source`` turns a
program into one function ``program(gl, T)`` whose nested ``run_<name>`` functions
perform each script with plain greenlet API calls, and ``reproducer`` wraps that function
with the runtime (``harness/target/runtime.py``, pasted verbatim) and the expected trace into a
standalone script.  Generating code, rather than interpreting the IR, also keeps the
harness's overhead per switch close to a hand-written script's.
"""

from __future__ import annotations

import pprint
from typing import List, Sequence

from greenfuzz.harness.families import Emitter, Op, flatten, op_comment, positions, registered, spec
from greenfuzz.harness.families.base import identifier, python_docstring
from greenfuzz.harness.families.stack import canary_base, recurse_function
from greenfuzz.harness.program.ir import MAIN, Program
from greenfuzz.harness.target import RUNTIME, paste

__all__ = ["canary_base", "op_comment", "op_lines", "program_source",
           "recurse_function", "reproducer"]


def op_lines(who: str, pc: int, op: Op) -> List[str]:
    """Source lines (indented for a function body) that perform one op and record it
    (its family's rendering, ``OpSpec``)."""
    return Emitter().op(who, pc, op)


def _run_function(name: str, script: Sequence[Op], emitter: Emitter) -> List[str]:
    body: List[str] = []
    for pc, op in positions(script):
        body += emitter.op(name, pc, op)
        if spec(op).ends_script:
            break
    else:
        body.append(f"return ret({name!r}, {len(flatten(script))}, None)")
    lines = [
        f"def run_{identifier(name)}(*args, **kwargs):",
        f"    rec({name!r}, -1, 'start', (args, kwargs))",
        "    try:",
    ]
    lines += ["        " + line for line in body]
    lines += [
        "    except BaseException as e:",
        f"        rec({name!r}, -1, 'died', e)",
        "        raise",
    ]
    return lines


def program_source(program: Program) -> str:
    """``def program(gl, T): ...`` performing the whole program on implementation ``gl``."""
    lines = [
        "def program(gl, T):",
        "    import sys",
        "    ref, rec, ret, spawn, drop, label = T.ref, T.rec, T.ret, T.spawn, T.drop, T.label",
        "    getcurrent, GreenletExit, via = gl.getcurrent, gl.GreenletExit, T.via",
        "    ctx, tracers = T.context_vars(), T.tracers_for(T)",
        "",
    ]
    emitter = Emitter()
    emitter.scripts = program.scripts()
    for name, script in (*program.greenlets, (MAIN, program.main)):
        lines += ["    " + line for line in _run_function(name, script, emitter)]
        lines.append("")
    for helper in emitter.helpers:
        lines += ["    " + line for line in helper]
        lines.append("")
    scripts = program.scripts()
    # A family may have main run in a copy of the thread's context (``main_context``)
    # and may clean up when main's script ends (``cleanup``).
    copy = any(f.main_context(scripts) for f in registered() if f.main_context)
    lines += [
        "    try:",
        "        T.copy_context().run(run_main)" if copy else "        run_main()",
        "    except BaseException:",
        "        pass  # recorded as main's 'died' event",
    ]
    cleanup = [line for f in registered() if f.cleanup for line in f.cleanup(scripts)]
    if cleanup:
        lines += ["    finally:", *("        " + line for line in cleanup)]
    return "\n".join(lines) + "\n"


def reproducer(
    program: Program,
    expected: Sequence[tuple],
    *,
    impl: str,
    title: str,
    details: Sequence[str] = (),
) -> str:
    """A standalone script: exit 1 while the implementation diverges, 0 once it agrees."""
    doc = [f"greenfuzz reproducer: {title}", ""]
    doc += list(details)
    doc += [
        "",
        "Run: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, default "
        f"{impl!r}).",
        "Exit status 1 while the implementation differs from the expected trace, 0 once "
        "it agrees.",
    ]
    docstring = python_docstring(doc)
    expected_src = pprint.pformat([tuple(e) for e in expected], width=96)
    parts = [
        "#!/usr/bin/env python3",
        docstring,
        "",
        paste(RUNTIME),  # the runtime and what it imports (harness/target/)
        "# ---- the program ----",
        program_source(program),
        "# ---- what a correct greenlet implementation does (greenfuzz's model) ----",
        f"EXPECTED = {expected_src}",
        "",
        "",
        "def _main():",
        "    import faulthandler",
        "    import os",
        "    faulthandler.enable()  # a crash prints where each thread was",
        f"    gl = load_implementation(os.environ.get('GREENFUZZ_IMPL', {impl!r}))",
        "    observed = execute(program, gl)",
        "    at = first_divergence(EXPECTED, observed)",
        "    if at is None:",
        "        print('OK: the implementation agrees with the expected trace')",
        "        return 0",
        "    print('DIVERGES at event %d (greenlet, op index, kind, value):' % at)",
        "    for i in range(max(0, at - 3), at):",
        "        print('   same     %r' % (EXPECTED[i],))",
        "    print('   expected %r' % (EXPECTED[at] if at < len(EXPECTED) else 'end of trace',))",
        "    print('   observed %r' % (observed[at] if at < len(observed) else 'end of trace',))",
        "    for line in explain_leak(program, gl, EXPECTED, observed, at):",
        "        print('   ' + line)",
        "    return 1",
        "",
        "",
        "if __name__ == '__main__':",
        "    sys.exit(_main())",
    ]
    return "\n".join(parts) + "\n"
