"""Programs as Python source.

The runner executes exactly the code a reproducer contains: ``program_source`` turns a
program into one function ``program(gl, T)`` whose nested ``run_<name>`` functions
perform each script with plain greenlet API calls, and ``reproducer`` wraps that function
with the runtime (``harness/target/runtime.py``, pasted verbatim) and the expected trace into a
standalone script.  Generating code, rather than interpreting the IR, also keeps the
harness's overhead per switch close to a hand-written script's.
"""

from __future__ import annotations

import keyword
import pprint
import re
import zlib
from typing import List, Optional, Sequence

from greenfuzz.harness.program import ir
from greenfuzz.harness.program.ir import (
    MAIN,
    Bogus,
    CtxCopy,
    CtxGet,
    CtxSet,
    Current,
    Drop,
    Exc,
    ExcInfo,
    Finalize,
    Finally,
    Frames,
    Handle,
    Inspect,
    InThread,
    Op,
    Orphan,
    Program,
    Raise,
    Recurse,
    Resurrect,
    Return,
    SetParent,
    Spawn,
    Switch,
    ThreadParent,
    Throw,
    Trace,
    span,
)
from greenfuzz.harness.target import source_path

RUNTIME_PATH = source_path("runtime")

_EXC_EXPR = {"GreenletExit": "GreenletExit", "FuzzError": "FuzzError"}


#: What a name pasted into source as code (not as a literal) may look like: greenlet
#: names (``run_<name>``), keyword-argument keys, exception types.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def identifier(name: object) -> str:
    """``name`` when it is a plain identifier, else ``ProgramError``: a program read from a
    file is data, and nothing in it may become code (defence in depth: the schema
    refuses such programs before they are built)."""
    if not (isinstance(name, str) and IDENTIFIER.fullmatch(name)
            and not keyword.iskeyword(name)):
        raise ir.ProgramError(f"not an identifier: {str(name)[:40]!r}")
    return name


def _exc_class(exc: Exc) -> str:
    return _EXC_EXPR.get(exc.type, identifier(exc.type))


def _args(args: Sequence[ir.Value], kwargs: Sequence[tuple] = ()) -> str:
    parts = [repr(a) for a in args] + [f"{identifier(k)}={v!r}" for k, v in kwargs]
    return ", ".join(parts)


def _ref(name: str) -> str:
    return f"ref({name!r})"


def op_comment(op: Op) -> str:
    """A one-line description of an op, for comments and reports."""
    if isinstance(op, Switch):
        return f"switch to {op.target}({_args(op.args, op.kwargs)})" + (
            "" if op.catch else ", exceptions propagate"
        )
    if isinstance(op, Throw):
        return f"throw into {op.target}: {_throw_args(op) or 'GreenletExit'}" + (
            "" if op.catch else ", exceptions propagate"
        )
    if isinstance(op, Spawn):
        return (f"spawn {op.name}" + (" (a greenlet subclass)" if op.subclass else "")
                + {"plain": "", "method": " (a subclass defining run)",
                   "init": " (a subclass overriding __init__)"}[op.kind]
                + (f" with parent {op.parent}" if op.parent else ""))
    if isinstance(op, SetParent):
        return f"set {op.target}.parent"
    if isinstance(op, Drop):
        return f"drop the program's reference to {op.target}"
    if isinstance(op, Inspect):
        return f"inspect {op.target}.{op.attr}"
    if isinstance(op, Current):
        return "which greenlet is current?"
    if isinstance(op, Return):
        return f"return {op.value!r}"
    if isinstance(op, Raise):
        return f"raise {op.exc.type}{op.exc.args!r}" + (
            " from the exception being handled" if op.cause else "")
    if isinstance(op, Recurse):
        return (f"recurse {op.depth} level(s) via {op.via} (salt {op.salt}), there do "
                f"{len(op.then)} op(s)")
    if isinstance(op, Frames):
        return f"list the functions on {op.target}'s stack (gr_frame, f_back...)"
    if isinstance(op, Handle):
        return f"raise and handle {op.exc.type}{op.exc.args!r}, in the except block do " \
               f"{len(op.then)} op(s)"
    if isinstance(op, ExcInfo):
        return "which exception is being handled? (sys.exc_info())"
    if isinstance(op, CtxSet):
        return f"set context variable {op.var} to {op.value!r}"
    if isinstance(op, CtxGet):
        return f"read context variable {op.var}"
    if isinstance(op, CtxCopy):
        return f"give {op.target} a copy of the current context"
    if isinstance(op, Resurrect):
        return (f"on GreenletExit in the next {len(op.then)} op(s): register itself "
                f"again (resurrect) and switch to {op.target}")
    if isinstance(op, Finalize):
        return (f"attach a {op.kind} finalizer to {op.target}: when it is freed, do "
                f"{len(op.then)} op(s)")
    if isinstance(op, ThreadParent):
        return f"set {op.target}.parent to this thread's main greenlet"
    if isinstance(op, Orphan):
        return "start a greenlet of this thread and leave it suspended when the thread ends"
    if isinstance(op, Finally):
        return (f"try: {op.split} op(s), finally: {len(op.then) - op.split} op(s) (record "
                "the exception leaving the try part)")
    if isinstance(op, InThread):
        return f"in a new thread, do {len(op.then)} op(s); is its main greenlet dead after?"
    if isinstance(op, Trace):
        return {"record": "install the tracer", "raise": "install a tracer that raises",
                "off": "remove the tracer",
                "bounce": "install a tracer that switches back once"}[op.mode]
    return type(op).__name__


def _throw_args(op: Throw) -> str:
    if op.style == "exc_info":
        return "*sys.exc_info()"
    if op.style == "none" or op.exc is None:
        return ""
    cls = _exc_class(op.exc)
    if op.style == "class":
        return cls
    if op.style == "class_args":
        return f"{cls}, {_args(op.exc.args)}"
    return f"{cls}({_args(op.exc.args)})"


def _expression(op: Op) -> Optional[str]:
    """The statement an op performs, as ``r = ...`` or a bare statement."""
    if isinstance(op, Switch):
        return f"r = {_ref(op.target)}.switch({_args(op.args, op.kwargs)})"
    if isinstance(op, Throw):
        return f"r = {_ref(op.target)}.throw({_throw_args(op)})"
    if isinstance(op, Spawn):
        parts = [repr(op.name), f"run_{identifier(op.name)}"]
        if op.parent:
            parts.append(_ref(op.parent))
        if op.subclass:
            parts.append("subclass=True")
        if op.kind != "plain":
            parts.append(f"kind={op.kind!r}")
        return f"r = spawn({', '.join(parts)})"
    if isinstance(op, SetParent):
        value = repr(op.parent.value) if isinstance(op.parent, Bogus) else _ref(op.parent)
        return f"{_ref(op.target)}.parent = {value}"
    if isinstance(op, Drop):
        return f"r = drop({op.target!r})"
    if isinstance(op, Current):
        return "r = label(getcurrent())"
    if isinstance(op, ThreadParent):
        return f"{_ref(op.target)}.parent = getcurrent()"
    if isinstance(op, Orphan):
        return "T.orphan(T)"
    if isinstance(op, Frames):
        return f"r = T.frame_names({_ref(op.target)}.gr_frame, 'run_{identifier(op.target)}')"
    if isinstance(op, ExcInfo):
        return "r = T.handled()"
    if isinstance(op, CtxSet):
        return f"r = ctx[{op.var!r}].set({op.value!r})"
    if isinstance(op, CtxGet):
        return f"r = ctx[{op.var!r}].get('<unset>')"
    if isinstance(op, CtxCopy):
        return f"{_ref(op.target)}.gr_context = T.copy_context()"
    if isinstance(op, Trace):
        return f"r = T.tracer_mode(tracers, gl.settrace(tracers[{op.mode!r}]))"
    if isinstance(op, Inspect):
        target = _ref(op.target)
        return {
            "dead": f"r = {target}.dead",
            "bool": f"r = bool({target})",
            "parent": f"r = label({target}.parent)",
            "gr_frame": f"r = {target}.gr_frame is None",
            "run": f"r = hasattr({target}, 'run')",
            "tag": f"r = getattr({target}, 'fuzz_tag', None)",
        }[op.attr]
    return None


_RESULT_KIND = {Switch: "value", Throw: "value", Inspect: "attr", Current: "current",
                Frames: "frames", ExcInfo: "exc_info", CtxGet: "context",
                Trace: "tracer"}


def op_lines(who: str, pc: int, op: Op) -> List[str]:
    """Source lines (indented for a function body) that perform one op and record it."""
    head = f"# {pc}: {op_comment(op)}"
    if isinstance(op, Return):
        return [head, f"return ret({who!r}, {pc}, {op.value!r})"]
    if isinstance(op, Raise):
        cause = " from sys.exc_info()[1]" if op.cause else ""
        return [head, f"raise {_exc_class(op.exc)}({_args(op.exc.args)}){cause}"]
    stmt = _expression(op)
    assert stmt is not None, op
    kind = _RESULT_KIND.get(type(op), "done")
    result = "r" if kind != "done" else "None"
    lines = [head, "try:", f"    {stmt}", "except Unbound as e:",
             f"    rec({who!r}, {pc}, 'unbound', e.args[0])"]
    if getattr(op, "catch", False):
        lines += ["except Exception as e:", f"    rec({who!r}, {pc}, 'caught', e)"]
    lines += ["else:", f"    rec({who!r}, {pc}, {kind!r}, {result})"]
    return lines


def recurse_function(who: str, pc: int) -> str:
    """The name of the level function a ``Recurse`` op at flat index ``pc`` calls."""
    return f"recurse_{who}_{pc}"


def canary_base(who: str, pc: int, salt: int) -> int:
    """The canaries' seed: differs between greenlets, ops and salts, so that a frame
    restored into the wrong greenlet or level is noticed too."""
    return zlib.crc32(f"{who}:{pc}:{salt}".encode()) & 0xFFFFFF


def _recurse_lines(who: str, pc: int, op: Recurse, helpers: List[List[str]]) -> List[str]:
    """The call that performs a ``Recurse`` op, and (in ``helpers``) its level function.

    Level ``k`` holds canaries ``a`` and ``b`` (functions of the seed and ``k``), calls
    level ``k + 1`` through the via (a C function calling back), checks the C result and
    the value the level below returned, and at the bottom performs the nested ops,
    checking its canaries after each; every level checks its canaries as it unwinds,
    normally or by an exception.  Only a failed check records anything (``stack``).
    """
    fn, base = recurse_function(who, pc), canary_base(who, pc, op.salt)
    at = f"{who!r}, {pc}"
    check = [f"if a != {base} + k or b != ({base} ^ k) * 31 + 7:",
             f"    rec({at}, 'stack', ('canary', k))"]
    bottom: List[str] = []
    for i, nested in enumerate(op.then):
        bottom += _op_block(who, pc + 1 + sum(span(o) for o in op.then[:i]), nested, helpers)
        if isinstance(nested, Raise):
            break
        bottom += check
    if op.via == "call":
        down = [f"v, problem = {fn}(k + 1), None"]
    else:
        down = [f"v, problem = via[{op.via!r}]({fn}, k + 1)"]
    lines = [
        f"def {fn}(k):",
        f"    # level k of op {pc} of {who}: {op_comment(op)}",
        f"    a = {base} + k",
        f"    b = ({base} ^ k) * 31 + 7",
        "    try:",
        f"        if k < {op.depth}:",
        *("            " + line for line in down),
        "            if problem is not None:",
        f"                rec({at}, 'stack', ('result', {op.via!r}, k, problem))",
        f"            if v != {2 * base} + k + 1:",
        f"                rec({at}, 'stack', ('returned', k, v))",
        "        else:",
        *("            " + line for line in bottom or ["pass"]),
        "    finally:",
        *("        " + line for line in check),
        f"    return {2 * base} + k",
    ]
    helpers.append(lines)
    return [f"# {pc}: {op_comment(op)}", f"{fn}(0)", f"rec({at}, 'done', None)"]


def _handle_lines(who: str, pc: int, op: Handle, helpers: List[List[str]]) -> List[str]:
    """A ``Handle`` op: its nested ops run inline, inside the except block."""
    cls = _exc_class(op.exc)
    body: List[str] = []
    for i, nested in enumerate(op.then):
        body += _op_block(who, pc + 1 + sum(span(o) for o in op.then[:i]), nested, helpers)
    return [f"# {pc}: {op_comment(op)}", "try:", f"    raise {cls}({_args(op.exc.args)})",
            f"except {cls}:", *("    " + line for line in body or ["pass"]),
            f"rec({who!r}, {pc}, 'done', None)"]


def _thread_lines(who: str, pc: int, op: InThread, helpers: List[List[str]]) -> List[str]:
    """An ``InThread`` op: its ops in a function that ``T.in_thread`` runs in a thread."""
    body: List[str] = []
    for i, nested in enumerate(op.then):
        body += _op_block(who, pc + 1 + i, nested, helpers)
    fn = f"thread_{who}_{pc}"
    orphans = [f"rec({who!r}, {pc}, 'orphans', T.orphans_after(T))"] \
        if any(isinstance(o, Orphan) for o in op.then) else []
    return [f"# {pc}: {op_comment(op)}", f"def {fn}():",
            *("    " + line for line in body or ["pass"]),
            f"r = T.in_thread(T, {fn})", f"rec({who!r}, {pc}, 'thread', r)", *orphans]


def _finally_lines(who: str, pc: int, op: Finally, helpers: List[List[str]]) -> List[str]:
    """A ``Finally`` op: ``try``/``finally`` inline; an inner ``except`` notes the
    exception leaving the try part (a bare ``raise`` adds no traceback entry) so that the
    finally block can record it, then forgets it (a frame holding its own traceback
    would be a reference cycle, and the collector is off)."""
    blocks: List[List[str]] = [[], []]
    for i, nested in enumerate(op.then):
        at = pc + 1 + sum(span(o) for o in op.then[:i])
        blocks[i >= op.split] += _op_block(who, at, nested, helpers)
    var = f"fin_{pc}"
    return [f"# {pc}: {op_comment(op)}", f"{var} = None", "try:", "    try:",
            *("        " + line for line in blocks[0] or ["pass"]),
            "    except BaseException as e:", f"        {var} = e", "        raise",
            "finally:", f"    rec({who!r}, {pc}, 'finally', T.in_flight(T, {var}))",
            f"    {var} = None", *("    " + line for line in blocks[1]),
            f"rec({who!r}, {pc}, 'done', None)"]


def _finalize_lines(who: str, pc: int, op: Finalize, helpers: List[List[str]]) -> List[str]:
    """A ``Finalize`` op: its ops in a function the finalizer calls when the target is
    freed (what escapes it is unraisable: ``sys.unraisablehook`` records it)."""
    body: List[str] = []
    for i, nested in enumerate(op.then):
        body += _op_block(who, pc + 1 + i, nested, helpers)
    fn = f"finalizer_{who}_{pc}"
    return [f"# {pc}: {op_comment(op)}", f"def {fn}():",
            f"    rec({who!r}, {pc}, 'finalizer', label(getcurrent()))",
            *("    " + line for line in body),
            f"    rec({who!r}, {pc}, 'finalized', None)",
            "try:", f"    T.finalize({_ref(op.target)}, {op.kind!r}, {fn})",
            "except Unbound as e:", f"    rec({who!r}, {pc}, 'unbound', e.args[0])",
            "else:", f"    rec({who!r}, {pc}, 'done', None)"]


def _resurrect_lines(who: str, pc: int, op: Resurrect,
                     helpers: List[List[str]]) -> List[str]:
    """A ``Resurrect`` op: its ops inline in a ``try`` whose ``except GreenletExit``
    registers the greenlet again and switches."""
    body: List[str] = []
    for i, nested in enumerate(op.then):
        body += _op_block(who, pc + 1 + sum(span(o) for o in op.then[:i]), nested, helpers)
    return [f"# {pc}: {op_comment(op)}", "try:", *("    " + line for line in body or ["pass"]),
            "except GreenletExit:",
            f"    rec({who!r}, {pc}, 'resurrected', T.resurrect({who!r}))",
            "    try:", f"        r = {_ref(op.target)}.switch()",
            "    except Unbound as e:", f"        rec({who!r}, {pc}, 'unbound', e.args[0])",
            "    except Exception as e:", f"        rec({who!r}, {pc}, 'caught', e)",
            "    else:", f"        rec({who!r}, {pc}, 'value', r)",
            f"rec({who!r}, {pc}, 'done', None)"]


def _op_block(who: str, pc: int, op: Op, helpers: List[List[str]]) -> List[str]:
    if isinstance(op, Resurrect):
        return _resurrect_lines(who, pc, op, helpers)
    if isinstance(op, Finalize):
        return _finalize_lines(who, pc, op, helpers)
    if isinstance(op, InThread):
        return _thread_lines(who, pc, op, helpers)
    if isinstance(op, Recurse):
        return _recurse_lines(who, pc, op, helpers)
    if isinstance(op, Handle):
        return _handle_lines(who, pc, op, helpers)
    if isinstance(op, Finally):
        return _finally_lines(who, pc, op, helpers)
    return op_lines(who, pc, op)


def _run_function(name: str, script: Sequence[Op], helpers: List[List[str]]) -> List[str]:
    body: List[str] = []
    pc = 0
    identifier(name)  # every ``who`` in the helpers' names comes from here
    for op in script:
        body += _op_block(name, pc, op, helpers)
        pc += span(op)
        if isinstance(op, (Return, Raise)):
            break
    else:
        body.append(f"return ret({name!r}, {pc}, None)")
    lines = [
        f"def run_{name}(*args, **kwargs):",
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
    helpers: List[List[str]] = []
    for name, script in (*program.greenlets, (MAIN, program.main)):
        lines += ["    " + line for line in _run_function(name, script, helpers)]
        lines.append("")
    for helper in helpers:
        lines += ["    " + line for line in helper]
        lines.append("")
    # Main sets context variables in a copy of the thread's context, dropped afterwards:
    # in the thread's own, each run's fresh variables would stay for ever (a growth the
    # raw-memory checks would blame on the implementation).
    sets = any(isinstance(op, CtxSet) for op in ir.walk(program.main))
    lines += [
        "    try:",
        "        T.copy_context().run(run_main)" if sets else "        run_main()",
        "    except BaseException:",
        "        pass  # recorded as main's 'died' event",
    ]
    if any(isinstance(op, Trace) for _, script in program.scripts() for op in ir.walk(script)):
        lines += ["    finally:",
                  "        gl.settrace(None)  # tracing ends with main's script"]
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
    runtime = RUNTIME_PATH.read_text()
    doc = [f"greenfuzz reproducer: {title}", ""]
    doc += list(details)
    doc += [
        "",
        "Run: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, default "
        f"{impl!r}).",
        "Exit status 1 while the implementation differs from the expected trace, 0 once "
        "it agrees.",
    ]
    docstring = '"""' + "\n".join(d.replace('"""', "'''") for d in doc).rstrip() + '\n"""'
    expected_src = pprint.pformat([tuple(e) for e in expected], width=96)
    parts = [
        "#!/usr/bin/env python3",
        docstring,
        "",
        "# ---- greenfuzz runtime (harness/target/runtime.py): recording and the registry ----",
        runtime.split('"""', 2)[2].lstrip("\n"),
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
