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
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Emitter,
    Family,
    Op,
    OpSpec,
    PlainSpec,
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
    m.thread_starts()
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



# -- plain reproducers (``plainwriter``) -------------------------------------------------

pw.define_helper("side_by_side", """
class Peers:
    \"\"\"What threads run side by side share: each one's main greenlet, one it parked for
    the others to switch to, one parked for another thread to drop (and the threads
    that one got GreenletExit in), and the rules across threads broken.\"\"\"

    def __init__(self, n):
        self.n, self.lock, self.barrier = n, threading.Lock(), threading.Barrier(n)
        self.mains, self.parked, self.victims = [None] * n, [None] * n, [None] * n
        self.idents, self.exits, self.broken = [None] * n, [[] for _ in range(n)], []

    def drop_victim(self, k):
        \"\"\"Drop, in this thread, the last reference to the greenlet thread k parked.\"\"\"
        with self.lock:
            victim, self.victims[k] = self.victims[k], None
        del victim


def parked_greenlet(exits=None):
    \"\"\"A greenlet of this thread, started and parked; it notes where it gets GreenletExit.\"\"\"
    def parked_run():
        try:
            greenlet.getcurrent().parent.switch()
        except greenlet.GreenletExit:
            if exits is not None:
                exits.append(threading.get_ident())
            raise

    g = greenlet.greenlet(parked_run)
    g.switch()
    return g


def side_by_side(programs):
    \"\"\"Run programs[k](k, peers) in thread k, all started together, under a tiny switch
    interval; which rules across threads were broken (greenlets are bound to their
    thread: switching to another thread's raises greenlet.error, and one dropped in
    another thread is killed in its own, once, or not at all once that thread ended).\"\"\"
    peers = Peers(len(programs))

    def body(k):
        try:
            peers.idents[k] = threading.get_ident()
            peers.mains[k] = greenlet.getcurrent()
            peers.parked[k] = parked_greenlet()
            peers.victims[k] = parked_greenlet(peers.exits[k])
            peers.barrier.wait(10)
            programs[k](k, peers)
        except BaseException as e:
            fail(f"thread {k}: {e!r} escaped")
        if greenlet.getcurrent() is not peers.mains[k]:
            peers.broken.append(f"thread {k}: getcurrent() is not its main greenlet")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=body, args=(k,), daemon=True)
               for k in range(len(programs))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        sys.setswitchinterval(interval)
    if any(thread.is_alive() for thread in threads):
        fail("a thread did not end within 10 s")
    peers.mains = peers.parked = peers.victims = None  # freed: their threads ended
    for k, exits in enumerate(peers.exits):
        dropped = f"thread {k}'s dropped greenlet got GreenletExit"
        if len(exits) > 1:
            peers.broken.append(f"{dropped} {len(exits)} times")
        if any(ident != peers.idents[k] for ident in exits):
            peers.broken.append(f"{dropped} in another thread")
    return peers.broken
""", imports=("sys", "threading"), needs=("fail",))


def _thread_events(w: pw.Writer, at: int, n: int) -> List[List[pw.Event]]:
    """The events of each thread of the ``Concurrent`` op whose ``threads`` event is at
    ``at``: they come just before it, thread after thread, named ``<name>@<k>``."""
    begin = at
    while begin > 0 and "@" in str(w.expected[begin - 1][0]):
        begin -= 1
    out: List[List[pw.Event]] = [[] for _ in range(n)]
    for who, pc, kind, payload in w.expected[begin:at]:
        name, _, k = str(who).rpartition("@")
        if k.isdigit() and int(k) < n:
            out[int(k)].append((name, pc, kind, payload))
    return out


def _plain_thread(w: pw.Writer, fn: str, k: int, n: int, root: str, program: Any,
                  events: List[pw.Event]) -> List[str]:
    """``def fn(k, peers)``: thread k's program, written by a writer of its own, its
    greenlets the function's locals (``nonlocal`` in its run functions)."""
    sub = pw.Writer(program, events, liveness=False)
    sub.scope, sub.thread = "nonlocal", (k, n)
    runs = [sub.run_function(name, script) for name, script in program.greenlets]
    main = sub.main_lines()
    tail = sub.teardown()
    for helper in sub.needs:
        if helper in pw.HELPERS:
            w.need(helper)
    w.imports |= sub.imports
    w.notes += sub.notes
    w.sources.update(sub.sources)
    names = [sub.ref(name) for name, _ in program.greenlets]
    lines = [f"def {fn}(k, peers):",
             f"    \"\"\"Thread {k} of {n}: {root}'s script as its main script, its own "
             "greenlets.\"\"\"",
             "    main = greenlet.getcurrent()",
             *([f"    {' = '.join(names)} = None"] if names else []),
             "    started, seen = [], []  # this thread's own"]
    if "label" in sub.needs:
        lines.append("    names[id(main)] = (weakref.ref(main), 'main')")
    if "seen" in sub.needs:
        lines += ["", "    def check_seen(what, expected):",
                  "        check(f'thread {k}: ' + what, seen, expected)", "        seen.clear()"]
    for block in (*runs, *sub.functions, *dict.fromkeys(sub.classes)):
        lines += ["", *("    " + line for line in
                        (block if isinstance(block, list) else block.splitlines()))]
    starts = [e[0] for e in events if e[2] == "start" and e[0] != MAIN]
    lines += ["", *("    " + line for line in [*pw.block_body(main), *tail]),
              f"    check('thread {k}: greenlets started, in order', started, {starts!r})"]
    return lines


def _plain_concurrent(w: pw.Writer, who: str, pc: int, op: Concurrent) -> pw.Rendered:
    at = next((i for i, kind, _ in w.events(who, pc) if kind == "threads"), None)
    if at is None:
        return ["fail('the threads were expected not to end')"], False
    w.need("side_by_side")
    w.need("check")
    n = len(op.roots)
    per_thread = _thread_events(w, at, n)
    fns = []
    for k, root in enumerate(op.roots):
        fn = f"thread_{w.ref(who)}_{pc}_{k}"
        fns.append(fn)
        main, *greenlets = thread_scripts(w.program.scripts(), root, op.self_switches)
        program = type(w.program)(main=main[1], greenlets=tuple(greenlets),
                                  meta=(("thread", k), ("threads", n)))
        w.functions.append(_plain_thread(w, fn, k, n, root, program, per_thread[k]))
    payload = next(p for i, kind, p in w.events(who, pc) if i == at)
    return [f"check('rules broken across threads', side_by_side([{', '.join(fns)}]), "
            f"{w.literal(list(payload or ()))})", *w.sync(at, "after the threads")], True


def _plain_nothing(w: pw.Writer, who: str, pc: int, what: str) -> pw.Rendered:
    """An op that does nothing outside a thread program (or aimed at its own thread)."""
    end = pw.done(w, who, pc)
    if end is None:
        return [f"fail({what + ' was expected not to be reached'!r})"], False
    return [f"# {what}: nothing, outside threads side by side", *w.sync(end, what)], True


def _peer(w: pw.Writer, offset: int) -> Optional[str]:
    """Which thread ``offset`` places on is, as code; None when no other."""
    if w.thread is None or offset % w.thread[1] == 0:
        return None
    return f"(k + {offset}) % {w.thread[1]}"


def _plain_cross(w: pw.Writer, who: str, pc: int, op: Cross) -> pw.Rendered:
    peer = _peer(w, op.offset)
    what = f"{op.action} to the {op.target} greenlet of the thread {op.offset} on"
    if peer is None:
        return _plain_nothing(w, who, pc, what)
    g = f"peers.{'mains' if op.target == 'main' else 'parked'}[{peer}]"
    if op.action == "throw":
        w.need("FuzzError")
    call = f"{g}.switch()" if op.action == "switch" else f"{g}.throw(FuzzError('cross'))"
    return w.outcome(who, pc, call, call, call)


def _plain_cross_drop(w: pw.Writer, who: str, pc: int, op: CrossDrop) -> pw.Rendered:
    peer = _peer(w, op.offset)
    if peer is None:
        return _plain_nothing(w, who, pc, f"drop the greenlet the thread {op.offset} on parked")
    statement = f"peers.drop_victim({peer})"
    return w.outcome(who, pc, statement, statement)


def _plain_yield(w: pw.Writer, who: str, pc: int, op: Yield) -> pw.Rendered:
    w.imports.add("time" if op.kind == "sleep" else "os")
    statement = "time.sleep(0)" if op.kind == "sleep" else "os.stat('.')"
    return w.outcome(who, pc, statement, statement)


FAMILY = Family(
    name="concurrent",
    ops=(
        OpSpec(Concurrent, plain=PlainSpec(_plain_concurrent),
               validate=_validate_concurrent,
               render=_render_concurrent, perform=_concurrent,
               comment=lambda op: f"run the scripts of {', '.join(op.roots)} as the main "
               "scripts of threads started together"),
        OpSpec(Yield, plain=PlainSpec(_plain_yield),
               validate=_validate_yield, perform=_done,
               comment=lambda op: f"let other threads run ({op.kind})",
               statement=lambda op: f"T.yield_gil({op.kind!r})"),
        OpSpec(Cross, plain=PlainSpec(_plain_cross),
               validate=_validate_cross, perform=_cross,
               comment=lambda op: f"{op.action} to the {op.target} greenlet of the thread "
               f"{op.offset} on",
               statement=lambda op: f"T.cross(T, {op.action!r}, {op.target!r}, {op.offset})"),
        OpSpec(CrossDrop, plain=PlainSpec(_plain_cross_drop),
               validate=_validate_drop, perform=_done,
               comment=lambda op: f"drop the greenlet the thread {op.offset} on parked",
               statement=lambda op: f"T.cross_drop(T, {op.offset})"),
    ),
    draw=_draw,
    check=_check,
)
