"""Family ``threads``: another thread reaches for this thread's greenlets — switching
(refused), re-parenting to its main greenlet, dropping the last reference over there,
and greenlets of a thread that ended."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    Decorations,
    Drawing,
    Emitter,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    ProgramError,
    Script,
    indent,
    remap,
)
from greenfuzz.harness.families.core import (
    Current,
    Drop,
    Inspect,
    Switch,
    Throw,
    inspects,
    others,
    switches,
    throws,
)
from greenfuzz.harness.families.deliveries import State, harness_error

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG


@dataclass(frozen=True)
class InThread:
    """Start a thread, perform ``then`` in it (its own main greenlet is current there),
    join it; records whether the thread's main greenlet is dead once the thread ended.

    Only ops that need no greenlet of this thread to run are allowed in ``then``:
    switches and throws (into this thread's greenlets: ``greenlet.error``, caught),
    ``Inspect``, ``Current``, ``Drop`` (a suspended greenlet freed there is killed when
    this thread next calls greenlet: the runtime calls ``getcurrent()`` right after the
    join, and records ``alive`` then), ``ThreadParent`` and ``Orphan``.  With orphans,
    an ``orphans`` event follows the ``thread`` one.
    """

    then: Tuple[Op, ...] = ()


@dataclass(frozen=True)
class ThreadParent:
    """In an ``InThread`` block: ``registry[target].parent = getcurrent()``, a greenlet of
    another thread (the thread's main).  A started greenlet refuses (``ValueError``,
    greenlet's test_threaded_reparent), main has no parent to set; an unstarted one takes
    it, and from then on cannot be switched to (``greenlet.error``).  No switch or throw
    may follow it in its block (the greenlet would start in that thread)."""

    target: str
    catch: bool = True


@dataclass(frozen=True)
class Orphan:
    """In an ``InThread`` block: start a greenlet of that thread that parks (switches back
    to the thread's main) in ``try/finally``, kept by the runtime so that it outlives the
    thread.  Once the thread's main greenlet reports dead, the ``orphans`` event records
    (how many are dead, how many ran ``finally``, how many outlive the runtime dropping
    them): greenlet kills nothing of a dead thread and frees it all."""


#: What an ``InThread`` block may hold.
THREAD_OPS = (Switch, Throw, Inspect, Current, Drop, ThreadParent, Orphan)


def _validate(owner: str, op: InThread) -> None:
    reparented = False
    for o in op.then:
        if not isinstance(o, THREAD_OPS):
            raise ProgramError(f"{owner}: {type(o).__name__} cannot run in a thread")
        if isinstance(o, (Switch, Throw)) and not o.catch:
            raise ProgramError(f"{owner}: switches in a thread must catch")
        if isinstance(o, Throw) and o.style == "exc_info":
            raise ProgramError(f"{owner}: no throw(*sys.exc_info()) in a thread")
        if isinstance(o, (Switch, Throw)) and reparented:
            # An unstarted greenlet given this thread's main as parent would start
            # here, in the other thread: not what the op is about.
            raise ProgramError(f"{owner}: no switch or throw after a ThreadParent")
        reparented = reparented or isinstance(o, ThreadParent)


def _validate_parent(owner: str, op: ThreadParent) -> None:
    if not op.catch:
        raise ProgramError(f"{owner}: a ThreadParent must catch")


def _render(e: Emitter, who: str, pc: int, op: InThread) -> List[str]:
    """An ``InThread`` op: its ops in a function that ``T.in_thread`` runs in a thread."""
    body = [line for lines in e.nested(who, pc, op) for line in lines]
    fn = f"thread_{who}_{pc}"
    orphans = [f"rec({who!r}, {pc}, 'orphans', T.orphans_after(T))"] \
        if any(isinstance(o, Orphan) for o in op.then) else []
    return [f"# {pc}: {e.comment(op)}", f"def {fn}():", *indent(body),
            f"r = T.in_thread(T, {fn})", f"rec({who!r}, {pc}, 'thread', r)", *orphans]


# -- model rules -----------------------------------------------------------------------

@dataclass
class Threads:
    """The model's state of the running ``InThread`` block: suspended greenlets freed
    over there, which greenlet kills when this thread next calls it (its "deleteme"
    list), in that order; the thread's main greenlet (made at need); and how many
    events there were when the block started."""

    deleteme: List[MG] = field(default_factory=list)
    main: Optional[MG] = None
    mark: int = 0


def _state(m: Model) -> Threads:
    return m.ext["threads"]


def _enter(m: Model, g: MG, op: InThread) -> None:
    m.thread_starts()
    g.in_thread = True
    m.ext["threads"] = Threads(mark=len(m.events))


def _leave(m: Model, g: MG, start: int, op: InThread) -> None:
    g.in_thread = False


def _ended(m: Model, g: MG, start: int, op: InThread) -> bool:
    """An ``InThread`` block's thread has ended and been joined.

    The runtime then calls ``getcurrent()``, where greenlet kills what was freed over
    there (``deleteme``, in order; greenlet_gc: "the next time that thread calls a
    greenlet API"), and records ``alive`` if anything was dropped there.  The main
    greenlet of a thread that has exited reports dead (python_threads docs, greenlet
    >= 2.0).  Orphans (``Orphan``) are dead, ran no ``finally`` (no GreenletExit for
    the greenlets of a thread that has ended: greenlet_gc; test_leaks'
    ``_check_untracked_memory_thread``) and are freed with the last reference."""
    m.pop_level(g)
    state = _state(m)
    deleteme, state.deleteme = state.deleteme, []
    for victim in deleteme:
        m.collect(victim)
    # Each drop over there recorded ``alive``: the runtime records it again.
    if any(kind == "alive" for _, _, kind, _ in m.events[state.mark:]):
        m.check_alive()
    m.rec(g.name, start, "thread", True)
    orphans = sum(isinstance(o, Orphan) for o in op.then)
    if orphans:
        m.rec(g.name, start, "orphans", (orphans, 0, 0))
    return True


def _collecting(m: Model, g: MG) -> bool:
    """Freed in another thread, a suspended greenlet is put on its thread's list of
    greenlets to kill "the next time that thread calls a greenlet API" (greenlet_gc,
    test_dealloc_other_thread): the end of the block.  Unstarted and dead ones are
    freed there and then."""
    if m.current.in_thread and g.state is State.SUSPENDED:
        _state(m).deleteme.append(g)
        return True
    return False


def _thread_parent(m: Model, g: MG, op: ThreadParent) -> None:
    """``target.parent = getcurrent()`` in another thread: main greenlets have no
    parent to set (AttributeError); a started greenlet refuses a parent of another
    thread (ValueError "parent cannot be on a different thread", greenlet's
    test_threaded_reparent); an unstarted one accepts it (verified on 3.5.6)."""
    target = m.lookup(op.target)
    assert target is not None
    if target.is_main:
        return m.fail(g, op, harness_error("AttributeError"))
    if target.state is not State.UNSTARTED:
        return m.fail(g, op, harness_error("ValueError"))
    state = _state(m)
    if state.main is None:
        state.main = m.new_greenlet("?", None, (), state=State.RUNNING, is_main=True,
                                    foreign=True)
        state.main.rc = 1 << 40
    old = target.parent
    target.parent = state.main
    m.safely(g, lambda: m.release(old))
    m.after(g, lambda: m.done(g))


def _orphan(m: Model, g: MG, op: Orphan) -> None:
    """The orphan starts and parks in its thread: nothing this thread sees."""
    m.done(g)


# -- strategies ------------------------------------------------------------------------

@lru_cache(maxsize=256)
def threads(targets: Tuple[str, ...]) -> st.SearchStrategy[InThread]:
    """An ``InThread`` whose ops reach for this thread's greenlets from another thread."""
    in_thread = st.one_of(
        switches(targets).map(lambda op: replace(op, catch=True)),
        throws(targets).map(lambda op: replace(op, catch=True)),
        inspects(targets),
        st.just(Current()),
        # Dropping the last reference over there, re-parenting to that thread's main
        # greenlet, and greenlets of that thread left suspended when it ends.
        st.builds(Drop, st.sampled_from(others(targets))),
        st.builds(ThreadParent, st.sampled_from(targets)),
        st.just(Orphan()),
    )
    return st.builds(InThread, st.lists(in_thread, max_size=4).map(_thread_block))


def _thread_block(block: Sequence[Op]) -> Tuple[Op, ...]:
    """``block`` without the switches and throws after its first ``ThreadParent`` (they
    could start the re-parented greenlet in that thread, see ``ThreadParent``)."""
    out: List[Op] = []
    for op in block:
        if isinstance(op, (Switch, Throw)) and any(isinstance(o, ThreadParent) for o in out):
            continue
        out.append(op)
    return tuple(out)


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    return [threads(targets)]


_drop_in_thread = st.integers(min_value=0, max_value=3).map(lambda n: n == 3)


def _after_kick(d: Drawing, name: str, main: List[Op], at: int, own: List[Op]) -> None:
    """Later on, started, given a parent of another thread (refused), or its last
    reference (often) dropped there while it is suspended (killed when main next calls
    greenlet)."""
    if d.draw(_drop_in_thread):
        where = d.draw(st.integers(min_value=at + 1, max_value=len(main)))
        main.insert(where, InThread((d.draw(st.sampled_from((ThreadParent(name),
                                                             Drop(name)))),)))


def _tame(owner: str, script: Script) -> Script:
    """``script`` without ``ThreadParent``, for programs the model gives up on
    (``Unsupported``) in this family.  A greenlet that ends into a parent chain leading to
    an ended thread is not one of them: that is ``Undecided`` and stays in the program
    (greenlet aborts there: a crash finding, known from greenlet's bundled data)."""
    return tuple(remap(op, lambda part: _tame(owner, part)) for op in script
                 if not isinstance(op, ThreadParent))



# -- plain reproducers (``plainwriter``) -------------------------------------------

pw.define_helper('in_thread', '''
def in_thread(body):
    """Run body() in a new thread, wait for it; is that thread's main greenlet dead?"""
    box = []

    def thread_main():
        try:
            body()
        finally:
            box.append(greenlet.getcurrent())

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    thread.join(10)
    greenlet.getcurrent()  # greenlet kills what was freed over there now
    deadline = time.monotonic() + 1.0  # it marks the thread's main dead just after join
    while not box[-1].dead and time.monotonic() < deadline:
        time.sleep(0.001)
    return box[-1].dead
''', imports=('threading', 'time'))


def _plain_in_thread(w: pw.Writer, who: str, pc: int, op: InThread) -> pw.Rendered:
    w.need("in_thread")
    fn = f"thread_{w.ref(who)}_{pc}"
    body, _ = pw.nested(w, who, pc, op.then)
    w.functions.append([f"def {fn}():", f"    \"\"\"What {who} does in a new thread.\"\"\"",
                        *("    " + line for line in w.declare(op.then, who)),
                        *("    " + line for line in pw.block_body(body))])
    thread = next(((i, payload) for i, kind, payload in w.events(who, pc) if kind == "thread"),
                  None)
    if any(kind == "orphans" for _, kind, _ in w.events(who, pc)):
        w.notes.append("InThread: the count of orphans dead, finished and freed after "
                       "the thread is the harness's (not checked)")
    if thread is None:
        return [f"in_thread({fn})", "fail('the thread was expected not to end')"], False
    index, dead = thread
    lines = [f"dead = in_thread({fn})"]
    if index > 0 and w.expected[index - 1][2] == "alive" and w.expected[index - 1][0] == who:
        lines += w.sync(index - 1, f"{who}: after the thread", always=True)
        if w.liveness:
            w.need("alive")
            lines.append(f"check_alive('greenlets left after the thread', "
                         f"{list(w.expected[index - 1][3] or ())!r})")
    lines += [*w.sync(index, f"{who}: after the thread"),
              f"check('the main greenlet of the thread is dead once it ended', dead, {dead!r})"]
    return lines, True


def _plain_thread_parent(w: pw.Writer, who: str, pc: int, op: ThreadParent) -> pw.Rendered:
    statement = f"{w.ref(op.target)}.parent = greenlet.getcurrent()"
    return w.outcome(who, pc, statement, statement)


def _plain_orphan(w: pw.Writer, who: str, pc: int, op: Orphan) -> pw.Rendered:
    w.notes.append("Orphan: a greenlet of the thread left suspended when it ends is the "
                   "harness's bookkeeping (rendered as a comment)")
    return ["# (an orphan greenlet would be started here: not rendered plainly)"], True



FAMILY = Family(
    name="threads",
    ops=(
        OpSpec(InThread, plain=PlainSpec(_plain_in_thread),
               validate=_validate, render=_render, enter=_enter, leave=_leave,
               ended=_ended,
               comment=lambda op: f"in a new thread, do {len(op.then)} op(s); is its main "
               "greenlet dead after?"),
        OpSpec(ThreadParent, plain=PlainSpec(_plain_thread_parent),
               names=("target",), validate=_validate_parent, only_in=InThread,
               perform=_thread_parent,
               comment=lambda op: f"set {op.target}.parent to this thread's main greenlet",
               statement=lambda op: f"ref({op.target!r}).parent = getcurrent()"),
        OpSpec(Orphan, plain=PlainSpec(_plain_orphan),
               only_in=InThread, perform=_orphan,
               comment=lambda op: "start a greenlet of this thread and leave it suspended "
               "when the thread ends",
               statement=lambda op: "T.orphan(T)"),
    ),
    draw=_draw,
    state=Threads,
    collecting=_collecting,
    decorate=Decorations(after_kick=_after_kick, tame=_tame),
)
