"""Family ``concurrent``: several threads start together and run switch graphs of their
own at the same time, under a tiny switch interval, releasing the GIL between switches.

A ``Concurrent`` op (in any script) names greenlets whose scripts become the main
scripts of threads (thread ``k`` runs the *thread program* rooted at ``roots[k]``: that
script as its main, with copies of every other greenlet of the program, the root named
``main`` there; ops of families other than core and this one are left out).  Each
thread has a registry and a trace of its own, and greenlets are bound to the thread
that made them (python_threads docs: "greenlets cannot be switched between threads"),
so whatever the interleaving, each thread's trace is the model's prediction for its
thread program.  After every thread has ended, the runtime appends thread ``k``'s
trace with each event's greenlet named ``<name>@<k>``, then a ``threads`` event with
the cross-thread rules broken (the model predicts none):

* switching to, or throwing into, a greenlet of another thread (its main greenlet, or
  one parked there) raises ``greenlet.error``, whether that thread still runs or has
  ended (``Cross``; greenlet's test_threading: "cannot switch to a different thread");
* a suspended greenlet whose last reference goes in another thread is killed in its own
  thread, "the next time that thread calls a greenlet API" (greenlet_gc), at most once,
  never in the thread that dropped it; one whose thread has ended gets no GreenletExit
  (``CrossDrop``);
* ``getcurrent()`` answers with the calling thread's greenlet (each thread's
  ``Current`` ops, and the runtime's checks before and after each thread program).

``Yield`` releases the GIL (``time.sleep(0)`` or a system call) so that other threads
run between two switches; threads end at different times, the first ones while others
still run, leaving their parked greenlets behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, List, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families.base import (
    MAIN,
    Emitter,
    Family,
    Op,
    OpSpec,
    ProgramError,
    Script,
    Scripts,
    family_of,
    flatten,
    indent,
    is_block,
    positions,
    spec,
    walk,
)
from greenfuzz.harness.families.core import Drop, SetParent, Spawn, Switch
from greenfuzz.harness.families.deliveries import Unsupported, harness_error

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import MG, Model

#: How a ``Yield`` lets other threads run: ``time.sleep(0)``, or a system call (``os.stat``).
YIELD_KINDS = ("sleep", "io")
#: Which greenlet of another thread a ``Cross`` addresses: its main greenlet, or a
#: greenlet it parked before the threads started.
CROSS_TARGETS = ("main", "parked")
MAX_THREADS = 4


@dataclass(frozen=True)
class Concurrent:
    """Start one thread per name in ``roots`` together (a barrier), each running the
    thread program rooted at that greenlet's script, with ``sys.setswitchinterval(1e-6)``;
    wait for all, record their traces and the cross-thread rules broken.

    ``self_switches`` keeps the switches a script makes to its own greenlet in the
    thread programs (the default, and what strategies draw).  greenlet 2.0.0-3.5.6 fail
    such a switch when it is the first greenlet call after another thread dropped one of
    the thread's greenlets (docs/upstream/self-switch-after-foreign-drop.md): a finding,
    never left out; greenlet's bundled data
    (``judging/documented/greenlet-self-switch.json``) reports it as known from 3.0.0rc2
    on, with the write-up.  False leaves those switches out, for runs that want to look
    past that bug on an implementation without such data."""

    roots: Tuple[str, ...]
    self_switches: bool = True


@dataclass(frozen=True)
class Yield:
    """Let other threads run (``YIELD_KINDS``); in main's thread too, where it changes
    nothing."""

    kind: str = "sleep"


@dataclass(frozen=True)
class Cross:
    """In a thread program: ``switch()`` to (or ``throw()`` into) greenlet ``target``
    (``CROSS_TARGETS``) of the thread ``offset`` places further on; ``greenlet.error``,
    caught.  Outside a thread program, nothing."""

    action: str = "switch"
    target: str = "main"
    offset: int = 1
    catch: bool = True


@dataclass(frozen=True)
class CrossDrop:
    """In a thread program: drop the last reference to the greenlet the thread
    ``offset`` places further on parked for this (first come, first served).  Outside a
    thread program, nothing."""

    offset: int = 1


#: The families whose ops a thread program keeps.
KEPT = ("core", "concurrent")


def _validate_concurrent(owner: str, op: Concurrent) -> None:
    if not 1 <= len(op.roots) <= MAX_THREADS or MAIN in op.roots:
        raise ProgramError(f"{owner}: Concurrent needs 1 to {MAX_THREADS} greenlets, not main")


def _validate_yield(owner: str, op: Yield) -> None:
    if op.kind not in YIELD_KINDS:
        raise ProgramError(f"{owner}: unknown yield kind {op.kind!r}")


def _validate_cross(owner: str, op: Cross) -> None:
    if op.action not in ("switch", "throw") or op.target not in CROSS_TARGETS:
        raise ProgramError(f"{owner}: bad Cross {op!r}")
    if not 1 <= op.offset < MAX_THREADS or not op.catch:
        raise ProgramError(f"{owner}: a Cross catches and its offset is 1 to {MAX_THREADS - 1}")


def _validate_drop(owner: str, op: CrossDrop) -> None:
    if not 1 <= op.offset < MAX_THREADS:
        raise ProgramError(f"{owner}: CrossDrop offset is 1 to {MAX_THREADS - 1}")


def _check(scripts: Scripts) -> None:
    """``Concurrent`` names greenlets of the program."""
    names = {name for name, _ in scripts if name != MAIN}
    for owner, script in scripts:
        for op in walk(script):
            if isinstance(op, Concurrent) and not set(op.roots) <= names:
                raise ProgramError(f"{owner}: Concurrent names unknown greenlets {op.roots}")


# -- thread programs -------------------------------------------------------------------

def _rename(name: object, root: str) -> object:
    return MAIN if name == root else name


def _kept(script: Script, root: str, owner: str, self_switches: bool) -> Script:
    """``owner``'s ``script`` in the thread program rooted at ``root``: only core's and
    this family's ops (blocks of other families left out with what they hold), the
    root's spawn left out, the root named ``main``, and unless ``self_switches``, no
    switch to ``owner`` itself (see ``Concurrent``)."""
    out: List[Op] = []
    for op in script:
        if family_of(op) not in KEPT or is_block(op) or isinstance(op, Concurrent):
            continue  # no threads started from a thread program
        if isinstance(op, Switch) and not self_switches and \
                (op.target == owner or (owner == root and op.target == MAIN)):
            continue
        if isinstance(op, Spawn) and op.name == root:
            continue
        if isinstance(op, (SetParent, Drop)) and op.target == root:
            continue  # main has no parent to set; it cannot be dropped
        names = spec(op).names
        if names:
            op = replace(op, **{f: _rename(getattr(op, f), root) for f in names})
        out.append(op)
    return tuple(out)


def thread_scripts(scripts: Scripts, root: str,
                   self_switches: bool = False) -> Tuple[Tuple[str, Script], ...]:
    """The scripts of the thread program rooted at ``root``, main's first."""
    by_name = dict(scripts)
    return ((MAIN, _kept(by_name[root], root, root, self_switches)),
            *((name, _kept(s, root, name, self_switches)) for name, s in scripts
              if name not in (MAIN, root)))


def _run_function(e: Emitter, name: str, script: Script) -> List[str]:
    """``run_<name>`` of a thread program (as ``execution.render`` writes them)."""
    body: List[str] = []
    for pc, op in positions(script):
        body += e.op(name, pc, op)
        if spec(op).ends_script:
            break
    else:
        body.append(f"return ret({name!r}, {len(flatten(script))}, None)")
    return [f"def run_{name}(*args, **kwargs):",
            f"    rec({name!r}, -1, 'start', (args, kwargs))",
            "    try:", *indent(body, 8),
            "    except BaseException as e:", f"        rec({name!r}, -1, 'died', e)",
            "        raise"]


def _thread_program(e: Emitter, fn: str, scripts: Tuple[Tuple[str, Script], ...]) -> List[str]:
    """``def <fn>(gl, T)``: a thread program, as ``execution.render.program_source``
    writes a program."""
    inner = Emitter()
    lines = [f"def {fn}(gl, T):",
             "    ref, rec, ret, spawn, drop, label = T.ref, T.rec, T.ret, T.spawn, T.drop, "
             "T.label",
             "    getcurrent, GreenletExit = gl.getcurrent, gl.GreenletExit"]
    for name, script in (*scripts[1:], scripts[0]):
        lines += indent(_run_function(inner, name, script))
    for helper in inner.helpers:
        lines += indent(helper)
    return [*lines, "    try:", "        run_main()", "    except BaseException:",
            "        pass  # recorded as main's 'died' event"]


def _render_concurrent(e: Emitter, who: str, pc: int, op: Concurrent) -> List[str]:
    lines = [f"# {pc}: {e.comment(op)}"]
    fns = []
    for k, root in enumerate(op.roots):
        fn = f"thread_program_{pc}_{k}"
        fns.append(fn)
        lines += _thread_program(e, fn, thread_scripts(e.scripts, root, op.self_switches))
    return [*lines, f"r = T.concurrent(T, [{', '.join(fns)}])",
            f"rec({who!r}, {pc}, 'threads', r)"]


# -- model rules -----------------------------------------------------------------------

def peer_is_self(m: Model, offset: int) -> bool:
    """Outside a thread program, or ``offset`` comes back to this very thread: a
    ``Cross`` or ``CrossDrop`` does nothing (the runtime's rule too)."""
    meta = dict(m.program.meta)
    return "thread" not in meta or offset % meta["threads"] == 0


def _concurrent(m: Model, g: MG, op: Concurrent) -> None:
    """Each thread's trace is its thread program's prediction (greenlets are bound to
    their thread), appended thread after thread with names ``<name>@<k>``; then no
    cross-thread rule broken."""
    scripts = m.program.scripts()
    for k, root in enumerate(op.roots):
        if root not in dict(scripts):
            raise Unsupported(f"Concurrent names {root}, which has no script")
        main, *greenlets = thread_scripts(scripts, root, op.self_switches)
        program = type(m.program)(main=main[1], greenlets=tuple(greenlets),
                                  meta=(("thread", k), ("threads", len(op.roots))))
        try:
            program.validate()
        except ProgramError as err:
            raise Unsupported(f"thread program of {root}: {err}") from None
        for who, at, kind, payload in type(m)(program).run():
            m.events.append((f"{who}@{k}", at, kind, payload))
    m.rec(g.name, g.pc, "threads", ())
    g.pc += 1


def _cross(m: Model, g: MG, op: Cross) -> None:
    """greenlet.error in a thread program (another thread's greenlet); nothing
    elsewhere."""
    if peer_is_self(m, op.offset):
        m.done(g)
    else:
        m.fail(g, op, harness_error("greenlet.error"))


def _done(m: Model, g: MG, op: Op) -> None:
    m.done(g)


# -- strategies ------------------------------------------------------------------------

@lru_cache(maxsize=256)
def concurrents(targets: Tuple[str, ...]) -> st.SearchStrategy[Concurrent]:
    """Thread programs rooted at some of ``targets`` (never main), switches to oneself
    kept (``Concurrent.self_switches``)."""
    roots = [t for t in targets if t != MAIN]
    return st.builds(Concurrent, st.lists(st.sampled_from(roots), min_size=1,
                                          max_size=MAX_THREADS).map(tuple))


@lru_cache(maxsize=1)
def in_threads() -> st.SearchStrategy[Op]:
    offsets = st.integers(min_value=1, max_value=MAX_THREADS - 1)
    return st.one_of(
        st.builds(Yield, st.sampled_from(YIELD_KINDS)),
        st.builds(Cross, st.sampled_from(("switch", "throw")), st.sampled_from(CROSS_TARGETS),
                  offsets),
        st.builds(CrossDrop, offsets),
    )


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    if not any(t != MAIN for t in targets):
        return [in_threads(), in_threads()]
    return [in_threads(), in_threads(), concurrents(targets), concurrents(targets)]


FAMILY = Family(
    name="concurrent",
    ops=(
        OpSpec(Concurrent, validate=_validate_concurrent,
               render=_render_concurrent, perform=_concurrent,
               comment=lambda op: f"run the scripts of {', '.join(op.roots)} as the main "
               "scripts of threads started together"),
        OpSpec(Yield, validate=_validate_yield, perform=_done,
               comment=lambda op: f"let other threads run ({op.kind})",
               statement=lambda op: f"T.yield_gil({op.kind!r})"),
        OpSpec(Cross, validate=_validate_cross, perform=_cross,
               comment=lambda op: f"{op.action} to the {op.target} greenlet of the thread "
               f"{op.offset} on",
               statement=lambda op: f"T.cross(T, {op.action!r}, {op.target!r}, {op.offset})"),
        OpSpec(CrossDrop, validate=_validate_drop, perform=_done,
               comment=lambda op: f"drop the greenlet the thread {op.offset} on parked",
               statement=lambda op: f"T.cross_drop(T, {op.offset})"),
    ),
    draw=_draw,
    check=_check,
)
