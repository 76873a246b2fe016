"""Family ``shutdown``: programs that end with the interpreter's own exit.

A program with ops of this family runs as a script of its own in a fresh interpreter
(``greenfuzz.harness.execution.at_exit``): a forked child never runs real finalization.
Main's script may register ``atexit`` callbacks (``AtExit``, before or after the
implementation is imported), leave things behind for the exit (``Leave``: threads,
cycles, objects whose ``__del__`` uses greenlet) and choose the exit status (``Exit``).
Greenlets the program still holds are *not* torn down: they are left suspended at exit.

What the model predicts: the program as usual, then every callback in ``atexit``'s order
(last registered first; the ones registered before the implementation was imported run
after all the others), performed by the main greenlet, then an ``atexit_end`` event and
which greenlets exist.  greenlet 3.5.0's changelog: "greenlet APIs … remain available
while all atexit callbacks run … using greenlet APIs from atexit callbacks registered in
any order is a valid thing to do".  What happens after the callbacks (finalization) is
judged by the rules greenlet documents for it (``target/exit_runtime.py``,
``late_problem``), never predicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

from greenfuzz.harness.families import exitplain
from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Decorations,
    Emitter,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Scripts,
    flatten,
    indent,
    span,
    walk,
)
from greenfuzz.harness.families.core import (
    Current,
    Drop,
    Inspect,
    Return,
    Spawn,
    Switch,
    Throw,
    inspects,
    switches,
    throws,
    validate_callback,
)

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import MG, Model

#: What ``Leave`` leaves behind at exit (``target/exit_runtime.py``, ``leave``):
#:
#: * ``daemon_switching``: daemon threads that switch between two greenlets for ever,
#:   with ``time.sleep(0)`` inside the greenlet and between switches (still running at
#:   exit; greenlet 2.0.x crashed here on CPython 3.11, issue 325's family);
#: * ``daemon_idle``: a daemon thread parked in ``time.sleep`` with a suspended greenlet;
#: * ``ended_thread``: a thread that ended, its suspended greenlets kept by a global;
#: * ``nondaemon``: a thread that shutdown waits for, switching greenlets for a while
#:   after main's script ended, then ending with suspended greenlets;
#: * ``cycle``: suspended greenlets held only by reference cycles;
#: * ``del_cycle`` / ``del_global``: an object whose ``__del__`` calls ``getcurrent()``,
#:   starts a greenlet and switches to a suspended one, held by a cycle (freed by the
#:   collection during finalization) or by a module global (freed as modules are
#:   torn down).
#:
#: Simplest first: drawing shrinks towards the first kind, so a finding that needs only
#: some ``Leave`` ends with one that starts no thread (with ``daemon_switching`` first,
#: shrunk findings kept it, and greenlet 3.5.x on CPython 3.11 aborting at exit with it
#: now and then, docs/upstream/daemon-greenlets-abort-at-exit.md, left a shutdown
#: mutant's finding unconfirmed: its reproducer died of that abort three times).
LEAVE_KINDS = ("cycle", "del_global", "del_cycle", "ended_thread", "daemon_idle",
               "nondaemon", "daemon_switching")
#: The kinds of ``Leave`` that switch greenlets in the program's own thread.
_SWITCHES_HERE = ("cycle", "del_cycle", "del_global")
#: Exit statuses a program may ask for (``Exit``).
EXIT_STATUSES = (0, 3, 7)


@dataclass(frozen=True)
class AtExit:
    """Register an ``atexit`` callback that performs ``then`` in the main greenlet.
    ``early``: registered before the implementation is imported (so it runs after the
    implementation's own callbacks, if it has any).  Records ``done`` when registered,
    ``atexit`` when it starts and ``atexit_done`` when it ends.  Only switches and throws
    that catch, ``Current``, ``Inspect``, ``Spawn`` and ``Drop`` may be nested."""

    early: bool = False
    then: Tuple[Op, ...] = ()


@dataclass(frozen=True)
class Leave:
    """Leave something behind for the exit (``LEAVE_KINDS``); ``count``: how many
    threads or greenlets."""

    kind: str
    count: int = 1


@dataclass(frozen=True)
class Exit:
    """The process exits with ``status`` (the last ``Exit`` performed wins; 0 without)."""

    status: int = 0


SHUTDOWN_OPS = (AtExit, Leave, Exit)
_NESTED = (Switch, Throw, Current, Inspect, Spawn, Drop)


def at_exit(program: Any) -> bool:
    """Whether ``program`` (a ``Program``) must run in an interpreter of its own."""
    return any(isinstance(op, SHUTDOWN_OPS) for _, s in program.scripts() for op in walk(s))


def expected_status(program: Any, expected: Sequence[tuple]) -> int:
    """The exit status a run of ``program`` must end with: that of the last ``Exit``
    whose ``done`` event the prediction ``expected`` holds (0 when none ran)."""
    script = flatten(program.main)
    status = 0
    for who, pc, kind, _ in expected:
        if who == MAIN and kind == "done" and 0 <= pc < len(script) \
                and isinstance(script[pc], Exit):
            status = script[pc].status
    return status


# -- validation ------------------------------------------------------------------------

def _validate_at_exit(owner: str, op: AtExit) -> None:
    validate_callback(owner, op.then, _NESTED, "an atexit callback")


def _validate_leave(owner: str, op: Leave) -> None:
    if op.kind not in LEAVE_KINDS:
        raise ProgramError(f"{owner}: unknown leave kind {op.kind!r}")
    if not 1 <= op.count <= 4:
        raise ProgramError(f"{owner}: leave count must be 1 to 4")


def _validate_exit(owner: str, op: Exit) -> None:
    if op.status not in EXIT_STATUSES:
        raise ProgramError(f"{owner}: exit status must be one of {EXIT_STATUSES}")


def _check(scripts: Scripts) -> None:
    """Ops of this family only at the top level of main's script: they act on the
    process, which main's script stands for."""
    for owner, script in scripts:
        top = {id(op) for op in script} if owner == MAIN else set()
        for op in walk(script):
            if isinstance(op, SHUTDOWN_OPS) and id(op) not in top:
                raise ProgramError(f"{owner}: {type(op).__name__} only at the top level of "
                                   "main's script")


# -- rendering -------------------------------------------------------------------------

def _render_at_exit(e: Emitter, who: str, pc: int, op: AtExit) -> List[str]:
    body = [line for lines in e.nested(who, pc, op) for line in lines]
    fn = f"atexit_{who}_{pc}"
    return [f"# {pc}: {e.comment(op)}", f"def {fn}():",
            f"    rec({who!r}, {pc}, 'atexit', None)", *indent(body, empty=""),
            f"    rec({who!r}, {pc}, 'atexit_done', None)",
            f"T.at_exit({fn}, {op.early!r})", f"rec({who!r}, {pc}, 'done', None)"]


def _render_leave(e: Emitter, who: str, pc: int, op: Leave) -> List[str]:
    return [f"# {pc}: {e.comment(op)}", f"T.leave({op.kind!r}, {op.count!r})",
            f"rec({who!r}, {pc}, 'done', None)"]


def _render_exit(e: Emitter, who: str, pc: int, op: Exit) -> List[str]:
    return [f"# {pc}: {e.comment(op)}", f"T.exit_status = {op.status!r}",
            f"rec({who!r}, {pc}, 'done', None)"]


# -- model rules -------------------------------------------------------------------------

@dataclass
class Shutdown:
    """The model's state of this family: the callbacks registered (op index, op), in
    order, each list; the one main is performing (its end index) and those to come."""

    late: List[Tuple[int, AtExit]] = field(default_factory=list)
    early: List[Tuple[int, AtExit]] = field(default_factory=list)
    queue: List[Tuple[int, AtExit]] = field(default_factory=list)
    running: Optional[Tuple[int, int]] = None
    started: bool = False


def _state(m: Model) -> Shutdown:
    return m.ext["shutdown"]


def _perform_at_exit(m: Model, g: MG, op: AtExit) -> None:
    state = _state(m)
    (state.early if op.early else state.late).append((g.pc, op))
    m.rec(g.name, g.pc, "done", None)
    g.pc += span(op)


def _perform_plain(m: Model, g: MG, op: Op) -> None:
    m.done(g)


def _main_finished(m: Model) -> None:
    """Main's script is over: the interpreter exits.  Non-daemon threads are waited
    for (none of the program's records anything), then ``atexit`` calls the callbacks,
    last registered first; those registered before the implementation was imported
    were registered before all the others, so they run last."""
    state = _state(m)
    if state.started or not at_exit(m.program):
        return
    state.started = True
    m.exiting = True
    m.main.run_frame = False  # callbacks are called by the exit, after run_main returned
    state.queue = [*reversed(state.late), *reversed(state.early)]
    m.finished = False
    _next(m)


def _next(m: Model) -> None:
    state = _state(m)
    main = m.main
    if not state.queue:
        state.running = None
        m.rec(MAIN, -1, "atexit_end", None)
        # What the program holds is left for finalization, not torn down: the
        # liveness check that follows sees every greenlet not freed so far.
        m.registry.clear()
        m.finished = True
        return
    pc, op = state.queue.pop(0)
    m.rec(MAIN, pc, "atexit", None)
    main.pc, main.levels = pc + 1, []
    state.running = (pc, pc + span(op))


def _stepping(m: Model, g: MG) -> bool:
    state = _state(m)
    if state.running is None or not g.is_main or g.name in m.speaking:
        return False  # (speaking: main performs a finalizer's ops, in another script)
    if g.pc != state.running[1] or g.levels:
        return False
    m.rec(MAIN, state.running[0], "atexit_done", None)
    _next(m)
    return True


def _uncaught(m: Model, g: MG, exc: object) -> bool:
    """An exception leaves a callback (one thrown into main itself, which ``except
    Exception`` does not catch: GreenletExit): ``atexit`` reports it to
    ``sys.unraisablehook`` ("Exception ignored in atexit callback", CPython 3.10+) and
    calls the next callback."""
    state = _state(m)
    if state.running is None or not g.is_main or g.name in m.speaking:
        return False
    m.rec(MAIN, -1, "unraisable", exc)
    _next(m)
    return True


# -- strategies ------------------------------------------------------------------------

_leaves = st.builds(Leave, st.sampled_from(LEAVE_KINDS), st.integers(min_value=1, max_value=4))


def _inside(targets: Tuple[str, ...]) -> st.SearchStrategy[Op]:
    others = [t for t in targets if t != MAIN] or [MAIN]
    return st.one_of(
        switches(targets).map(lambda op: replace(op, catch=True)),
        switches(targets).map(lambda op: replace(op, catch=True)),
        throws(targets).map(lambda op: replace(op, catch=True)),
        st.just(Current()), st.just(Current()),
        inspects(targets, ("dead", "bool", "parent")),
        st.builds(Drop, st.sampled_from(others)),
    )


def _decorate(draw: Callable, program: Any, targets: Tuple[str, ...],
              families: Tuple[str, ...]) -> Any:
    """Make ``program`` end with the interpreter's exit: always when only core and this
    family are drawn from, else one program in six (a fresh interpreter per program
    costs far more than a forked child).  Adds callbacks (early or late; one may spawn
    a greenlet of its own that switches back), things left behind and an exit status,
    at drawn places of main's top-level script."""
    alone = set(families) <= {"core", "shutdown"}
    # The last of six choices: shrinking (towards 0) leaves a program without them.
    if not alone and draw(st.integers(min_value=0, max_value=5)) != 5:
        return program
    main = list(program.main)
    greenlets = list(program.greenlets)
    callbacks = draw(st.lists(st.builds(AtExit, st.booleans(),
                                        st.lists(_inside(targets), min_size=1, max_size=3)
                                        .map(tuple)), max_size=3))
    if callbacks and draw(st.booleans()):
        # A greenlet started from a callback: it looks around and switches back.
        name = f"g{len(greenlets) + 1}"
        own = draw(st.lists(st.one_of(st.just(Current()),
                                      switches((MAIN,)).map(lambda op: replace(op, catch=True)),
                                      st.builds(Return, st.integers(0, 9))), max_size=2))
        greenlets.append((name, tuple(own)))
        first = callbacks[0]
        callbacks[0] = replace(first, then=(Spawn(name), Switch(name, (1,)), *first.then))
    extra = [*callbacks, *draw(st.lists(_leaves, max_size=2))]
    if draw(st.booleans()):
        extra.append(Exit(draw(st.sampled_from(EXIT_STATUSES))))
    if not extra:
        extra.append(draw(_leaves))
    if any(type(op).__name__ == "Trace" for _, script in program.scripts()
           for op in walk(script)):
        # The model does not predict what a tracer sees of the greenlets a ``Leave``
        # switches to in this thread (found at volume: Trace(bounce), then
        # Leave(cycle), the tracer records switches into unnamed greenlets): under a
        # tracer, leave threads behind instead.
        extra = [replace(op, kind="daemon_idle")
                 if isinstance(op, Leave) and op.kind in _SWITCHES_HERE else op for op in extra]
    for op in extra:
        main.insert(draw(st.integers(min_value=0, max_value=len(main))), op)
    changed = replace(program, main=tuple(main), greenlets=tuple(greenlets))
    changed.validate()
    return changed



# -- plain reproducers (``plainwriter``) -------------------------------------------------
#
# The file runs itself as a child (``--child``: the program, then the interpreter's
# exit) and judges what the child printed as the harness's oracle does; the helpers it
# writes out for that, and for each ``Leave`` kind, are in ``exitplain``.

def _plain_child(w: pw.Writer) -> None:
    """Once per file: it judges itself run as a child, which runs the program and exits."""
    if w.prologue:
        return
    w.need("exit")
    at_exit = []
    for i, (_, pc, kind, payload) in enumerate(w.expected):
        if w.exit_phase is None or i < w.exit_phase:
            continue
        if kind in ("atexit", "atexit_done"):
            at_exit.append(f"{kind} {pc}")
        elif kind == "atexit_end":
            at_exit.append(kind)
        elif kind == "unraisable" and pc < 0:
            at_exit.append(f"unraisable {getattr(payload, 'type', payload)}")
    w.doc += ["", "It runs itself as a child (THIS_FILE --child: the program, then the",
              "interpreter's exit) and compares what the child printed at exit."]
    w.prologue += [
        f"AT_EXIT = {at_exit!r}  # what the callbacks print at exit, in order",
        "if sys.argv[1:] != ['--child']:",
        f"    sys.exit(judge_child(AT_EXIT, {expected_status(w.program, w.expected)!r}))",
        "# The child: the program, then the interpreter's exit.",
        "gc.disable()  # cycles are left for the exit",
        "exit_status = 0",
        "early_callbacks = []  # registered as if before the implementation is imported",
        "atexit.register(run_early_callbacks)"]
    w.epilogue += [
        "sys.unraisablehook = lambda u: event(f'unraisable {type(u.exc_value).__name__}')",
        "sys.exit(exit_status)  # the interpreter exits: atexit callbacks, finalization"]


def _plain_at_exit(w: pw.Writer, who: str, pc: int, op: AtExit) -> pw.Rendered:
    _plain_child(w)
    fn = f"at_exit_{pc}"
    events = w.events(who, pc)
    lines = [f"def {fn}():", f"    \"\"\"An atexit callback{' registered early' * op.early}.\"\"\"",
             *("    " + line for line in w.declare(op.then, who)),
             f"    event('atexit {pc}')"]
    for i, kind, _ in events:
        if kind == "atexit":
            lines += ["    " + line for line in w.sync(i, f"atexit callback {pc} starts")]
    body, goes_on = pw.nested(w, who, pc, op.then)
    lines += ["    " + line for line in body]
    for i, kind, _ in events:
        if kind == "atexit_done" and goes_on:
            lines += ["    " + line for line in w.sync(i, f"atexit callback {pc} ends")]
            lines.append(f"    event('atexit_done {pc}')")
    w.functions.append(lines)
    register = f"early_callbacks.append({fn})" if op.early else f"atexit.register({fn})"
    return w.outcome(who, pc, register, register)


def _plain_leave(w: pw.Writer, who: str, pc: int, op: Leave) -> pw.Rendered:
    _plain_child(w)
    helper, call = exitplain.LEAVE_CALLS[op.kind]
    w.need(f"leave_{helper}")
    statement = call.format(n=op.count)
    lines, goes_on = w.outcome(who, pc, statement, statement)
    if not any(type(o).__name__ == "Trace" for _, s in w.program.scripts() for o in walk(s)):
        return lines, goes_on
    return ["tracing = greenlet.gettrace()  # what is left is not the program's to trace",
            "greenlet.settrace(None)", *lines, "greenlet.settrace(tracing)"], goes_on


def _plain_exit(w: pw.Writer, who: str, pc: int, op: Exit) -> pw.Rendered:
    _plain_child(w)
    statement = f"exit_status = {op.status!r}"
    return w.outcome(who, pc, statement, statement)



FAMILY = Family(
    name="shutdown",
    ops=(
        OpSpec(AtExit, plain=PlainSpec(_plain_at_exit),
               validate=_validate_at_exit, render=_render_at_exit,
               perform=_perform_at_exit,
               comment=lambda op: "register an atexit callback"
               + (" before the implementation is imported" if op.early else "")
               + f" that does {len(op.then)} op(s)"),
        OpSpec(Leave, plain=PlainSpec(_plain_leave),
               validate=_validate_leave, render=_render_leave, perform=_perform_plain,
               comment=lambda op: f"leave behind for the exit: {op.kind} x{op.count}"),
        OpSpec(Exit, plain=PlainSpec(_plain_exit),
               validate=_validate_exit, render=_render_exit, perform=_perform_plain,
               comment=lambda op: f"exit with status {op.status}"),
    ),
    decorate=Decorations(
        finish=lambda d, program, predict: _decorate(d.draw, program, d.targets, d.families)),
    check=_check,
    state=Shutdown,
    main_finished=_main_finished,
    stepping=_stepping,
    uncaught=_uncaught,
)
