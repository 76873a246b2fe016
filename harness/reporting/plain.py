"""Plain reproducers: a minimal program as the greenlet code a maintainer would write.

The full reproducer (``render.reproducer``) pastes the harness runtime and replays an
instrumented program against an expected event list: exact, but a thousand lines no
upstream bug report wants.  This module writes the same program as ordinary code against
the implementation's API (``greenlet.greenlet(run, parent)``, ``g.switch(...)``,
``g.throw(...)``, ``del g``, ``g.parent = ...``), with one plain ``check(what, observed,
expected)`` at each place the model predicts something observable.  Checks run in the
order the model predicts because each sits where its step happens; what happens
elsewhere (a kill during a ``del``, a tracer call, a finalizer) is noted in a ``seen``
list, the idiom of greenlet's own tests, and compared right after the step that causes it.

Family set-up (threads, tracing, finalizers, recursion through C) is done by small named
helpers written out in the file, never by the harness runtime.  Ops whose meaning needs
the harness (an orphan greenlet's bookkeeping, the once-only bouncing tracer) are listed
in ``Plain.notes`` and said so in the file; such a file is still run, and its verification
tells whether it reproduces.

Rendering dispatches on op type (``_OPS``), one function per op class.  They stay here,
not in the family modules: they write through ``_Writer`` (this stage's), which the
families, below the model, may not import.  An op type with no rendering (a new family's)
ends its script in the file, and ``Plain.notes`` says so.
"""

from __future__ import annotations

import inspect
import keyword
import textwrap
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

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
from greenfuzz.harness.target import runtime
from greenfuzz.harness.target.runtime import ExcValue

Event = Tuple[str, int, str, object]

#: Events that happen away from the op being performed: noted in ``seen`` where they
#: happen and compared after the next step the model records (see ``_Writer.attribute``).
ELSEWHERE = ("finalizer", "finalized", "trace", "unraisable")


@dataclass(frozen=True)
class Plain:
    """A plain reproducer and what it could not say plainly."""

    source: str
    #: Ops or events rendered only partly, or not at all, with why (one line each).
    notes: Tuple[str, ...] = ()

    @property
    def lines(self) -> int:
        """Lines of code: not blank, not the docstring, not comments."""
        body = self.source.split('"""', 2)[-1]
        return sum(1 for line in body.splitlines()
                   if line.strip() and not line.strip().startswith("#"))


# -- helpers written out in the file, each only when the program needs it ----------------

_HELPERS: Dict[str, str] = {
    "check": '''
def check(what, observed, expected):
    """Print expected vs observed and exit 1 when they differ."""
    if observed != expected:
        fail(f"{what}: expected {expected!r}, observed {observed!r}")
''',
    "fail": '''
def fail(message):
    print("FAIL " + message, flush=True)
    os._exit(1)  # from any greenlet or thread, past any except clause
''',
    "load": '''
def implementation(spec):
    """The module under test: a module name, or a .py file."""
    if not spec.endswith(".py"):
        return importlib.import_module(spec)
    found = importlib.util.spec_from_file_location("implementation", spec)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module
''',
    "seen": '''
seen = []  # what happened away from the step being checked: kills, finalizers, tracer calls


def check_seen(what, expected):
    check(what, seen, expected)
    seen.clear()
''',
    "Exc": '''
class Exc:
    """Equal to an exception of exactly this type (and these args, unless None)."""

    def __init__(self, cls, args=None):
        self.cls, self.args = cls, args

    def __eq__(self, other):
        return type(other) is self.cls and self.args in (None, other.args)

    def __repr__(self):
        return self.cls.__name__ + ("(...)" if self.args is None else repr(self.args))
''',
    "FuzzError": '''
class FuzzError(Exception):
    """This script's own exception type."""
''',
    "label": '''
names = {}  # id(greenlet) -> a weak reference to it, and the name this script gives it


def label(g):
    """g's name; "?" for one this script did not make (a freed one's id may be reused)."""
    ref, name = names.get(id(g), (None, "?"))
    return None if g is None else name if ref is not None and ref() is g else "?"
''',
    "alive": '''
refs = {}  # name -> weak reference to every greenlet made


def check_alive(what, expected):
    """Which greenlets still exist (after a collection, when more than expected do)."""
    def alive():
        return sorted(name for name, ref in refs.items() if ref() is not None)
    if alive() != expected:
        gc.collect()
    check(what, alive(), expected)
''',
    "stack": '''
def stack(g, bottom):
    """The functions of this file on g's suspended stack (gr_frame, f_back...), innermost
    first, down to ``bottom``; None when g has no frame."""
    frame, found = g.gr_frame, []
    if frame is None:
        return None
    while frame is not None:
        if frame.f_code.co_filename == __file__ and not frame.f_code.co_name.endswith("tracer"):
            found.append(frame.f_code.co_name)
            if found[-1] == bottom:
                break
        frame = frame.f_back
    return tuple(found)
''',
    "handled": '''
def handled():
    """The exception being handled and its __context__, or None."""
    e = sys.exc_info()[1]
    return None if e is None else (e, e.__context__)
''',
    "in_flight": '''
def in_flight(e):
    """The exception leaving a try block, its __cause__, and the run_* functions (and the
    module) its traceback passes through."""
    if e is None:
        return None
    tb, runs = e.__traceback__, []
    while tb is not None:
        name = tb.tb_frame.f_code.co_name
        if name.startswith("run_") or name == "<module>":
            runs.append(name)
        tb = tb.tb_next
    return (e, e.__cause__, tuple(runs))
''',
    "ctx": '''
a, b = contextvars.ContextVar("a"), contextvars.ContextVar("b")
contextvars.copy_context()  # the thread's context exists from here on (made on first use)
''',
    "tracers": '''
def tracer(event, args):
    """Notes every switch and throw, in the greenlet switched to."""
    if event in ("switch", "throw"):
        origin, target = args
        seen.append(f"trace: {event} {label(origin)} -> {label(target)}")


def raising_tracer(event, args):
    """Notes it, then raises, between greenlets this script holds."""
    tracer(event, args)
    if event in ("switch", "throw") and all(
            g is main or globals().get(label(g)) is g for g in args):
        raise FuzzError("trace")


def bouncing_tracer(event, args):
    """Notes it; once, on a switch between two suspended greenlets this script holds,
    switches straight back to the origin from inside the callback (in the target)."""
    tracer(event, args)
    if bounced or event != "switch":
        return
    origin, target = args
    if origin is target or origin.dead or label(target) not in ["main", *started] or not all(
            g is main or globals().get(label(g)) is g for g in args):
        return
    bounced.append(True)
    try:
        origin.switch("bounce")
    except BaseException:
        del args, origin, target  # the traceback keeps this frame: not the greenlets
        raise


bounced = []
''',
    "started": '''
started = []  # the greenlets whose run has begun, in order
''',
    "in_thread": '''
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
''',
    "Held": '''
class Held:
    """Stored on a greenlet: its __del__ runs a finalizer when the greenlet is freed."""

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()
''',
    "unraisable": '''
sys.unraisablehook = lambda u: seen.append(f"unraisable {type(u.exc_value).__name__}")
''',
}

#: The order helpers appear in, and the modules each needs.
_HELPER_ORDER = ("fail", "check", "load", "seen", "Exc", "FuzzError", "label", "alive",
                 "stack", "handled", "in_flight", "ctx", "started", "tracers", "in_thread", "Held",
                 "unraisable")
_HELPER_IMPORTS = {"fail": ("os",), "load": ("importlib", "importlib.util"),
                   "alive": ("gc", "weakref"), "label": ("weakref",), "handled": ("sys",),
                   "ctx": ("contextvars",),
                   "in_thread": ("threading", "time"), "unraisable": ("sys",)}
#: What a helper needs besides itself.
_HELPER_NEEDS = {"check": ("fail",), "seen": ("check",), "alive": ("check",),
                 "tracers": ("seen", "label", "FuzzError", "started")}


def _via_source(via: str) -> str:
    """A via helper of the runtime (``Recurse`` through C), written out: our own
    stdlib-only code, the same the full reproducer pastes."""
    parts = [inspect.getsource(runtime.VIA[via])]
    if via == "qsort":
        parts = ["_QSORT = []\n\n", inspect.getsource(runtime._qsort), "\n\n", *parts]
    return "\n" + "".join(parts)


# -- the writer --------------------------------------------------------------------------


class _Writer:
    """Renders one program with its predicted events."""

    def __init__(self, program: Program, expected: Sequence[Event], liveness: bool,
                 upto: Optional[int] = None) -> None:
        self.program = program
        self.expected = [tuple(e) for e in expected]
        #: Where main's script ends (its ``return`` or ``died`` event); the teardown follows.
        self.main_end = next((i for i, e in enumerate(self.expected) if e[0] == MAIN and (
            e[2] == "died" or (e[2] == "return" and e[1] >= 0))), len(self.expected))
        #: The finding diverges before the teardown: the file ends with main's script,
        #: and what the teardown would show (kills of what is left) is left out.
        self.short = upto is not None and upto <= self.main_end
        self.liveness = liveness
        #: Rendering the try part of a ``Resurrect``: a kill there resurrects.
        self.resurrecting = False
        #: Rendering a finalizer's ops: they run in whichever greenlet frees the target.
        self.finalizing = False
        #: The bouncing tracer needs to know which greenlets have started.
        self.bouncing = any(isinstance(op, Trace) and op.mode == "bounce"
                            for _, script in program.scripts() for op in ir.walk(script))
        self.needs: Set[str] = set()
        self.need("check")
        self.imports: Set[str] = set()
        self.vias: List[str] = []
        self.notes: List[str] = []
        self.classes: List[str] = []
        self.functions: List[List[str]] = []
        self.counter = 0
        #: Events of each op, by (who, pc): (index in the trace, kind, payload).
        self.at: Dict[Tuple[str, int], List[Tuple[int, str, object]]] = {}
        self.start: Dict[str, object] = {}
        self.died: Dict[str, ExcValue] = {}
        self.died_at: Dict[str, int] = {}
        #: What ``seen`` must hold at each event that ends a step (by trace index).
        self.seen_at: Dict[int, List[str]] = {}
        self.attribute()

    # -- the trace ----------------------------------------------------------------------

    def attribute(self) -> None:
        """Index the trace by op, and give each event that happens elsewhere to the next
        event recorded at the place of a step (where ``check_seen`` compares them)."""
        pending: List[str] = []
        early, moved = self.killed_in_finally()
        for i, (who, pc, kind, payload) in enumerate(self.expected):
            if kind == "start":
                self.start[who] = payload
            if kind == "died":
                self.died[who] = payload  # type: ignore[assignment]
                self.died_at[who] = i
            if pc >= 0 and kind not in ELSEWHERE:
                self.at.setdefault((who, pc), []).append((i, kind, payload))
            if i in early:
                pending.append(f"{early[i]} killed")
            note = self.elsewhere(who, pc, kind, payload)
            if note is not None:
                if i not in moved:
                    pending.append(note)
                continue
            if pending and (pc >= 0 or kind in ("start", "teardown", "alive")
                            or (kind == "died" and who == MAIN)):
                self.seen_at[i] = pending
                pending = []

    def killed_in_finally(self) -> Tuple[Dict[int, str], Set[int]]:
        """Kills whose GreenletExit runs finally blocks first: the model records the
        death once they are done, but the file notes the kill where the GreenletExit
        arrives (the ``except`` around the suspended switch), before them.  By the index
        of the first ``finally`` event of each such kill, who is killed; and the indexes
        of those deaths (noted early)."""
        found: Dict[int, str] = {}
        moved: Set[int] = set()
        for d, (who, _, kind, payload) in enumerate(self.expected):
            if kind != "died" or self.elsewhere(who, -1, kind, payload) != f"{who} killed":
                continue
            if self.short and d > self.main_end:
                continue  # not rendered: the file ends with main's script
            # Back from the death, over what the dying greenlet does meanwhile (its own
            # steps, and the tracer's calls for switches to itself).
            first, j = None, d - 1
            while j >= 0 and self.expected[j][0] == who and (
                    self.expected[j][1] >= 0 or (self.expected[j][2] == "trace" and
                                                 self.expected[j][3][1:] == (who, who))):
                if self.expected[j][2] == "finally":
                    first = j
                j -= 1
            if first is not None:
                found[first] = who
                moved.add(d)
        return found, moved

    @staticmethod
    def elsewhere(who: str, pc: int, kind: str, payload: object) -> Optional[str]:
        if kind == "died" and who != MAIN and isinstance(payload, ExcValue) \
                and payload.type == "GreenletExit" and payload.args is None:
            return f"{who} killed"
        if kind == "finalizer":
            return f"finalizer {who} {pc} runs in {payload}"
        if kind == "finalized":
            return f"finalizer {who} {pc} done"
        if kind == "trace":
            event, origin, target = payload  # type: ignore[misc]
            return f"trace: {event} {origin} -> {target}"
        if kind == "unraisable":
            return f"unraisable {payload.type if isinstance(payload, ExcValue) else payload}"
        return None

    def killed(self, who: str) -> bool:
        d = self.died.get(who)
        return d is not None and d.type == "GreenletExit" and d.args is None

    def events(self, who: str, pc: int) -> List[Tuple[int, str, object]]:
        return self.at.get((who, pc), [])

    def sync(self, index: int, what: str, always: bool = False) -> List[str]:
        """``check_seen`` of what happened elsewhere up to the event at ``index``;
        ``always`` checks that nothing did, too, where the file notes things anyway
        (after a ``del``, where kills happen)."""
        found = self.seen_at.get(index)
        if not found and not (always and "seen" in self.needs):
            return []
        self.need("seen")
        return [f"check_seen({what!r}, {found or []!r})"]

    # -- names and values ---------------------------------------------------------------

    def need(self, helper: str) -> None:
        if helper in self.needs:
            return
        self.needs.add(helper)
        for other in _HELPER_NEEDS.get(helper, ()):
            self.need(other)

    @staticmethod
    def ref(name: str) -> str:
        """The global a greenlet is held in (its name, when that is a usable identifier)."""
        if name == MAIN or (name.isidentifier() and not keyword.iskeyword(name)
                            and name not in _RESERVED):
            return name
        return "g_" + "".join(c if c.isalnum() else "_" for c in name)

    def exc_class(self, type_name: str) -> str:
        if type_name == "GreenletExit":
            return "greenlet.GreenletExit"
        if type_name == "greenlet.error":
            return "greenlet.error"
        if type_name == "FuzzError":
            self.need("FuzzError")
        return type_name

    def literal(self, value: object) -> str:
        """Python source for an expected value (exceptions as ``Exc`` matchers)."""
        if isinstance(value, ExcValue):
            self.need("Exc")
            args = "" if value.args is None else f", {self.literal(tuple(value.args))}"
            return f"Exc({self.exc_class(value.type)}{args})"
        if isinstance(value, tuple):
            inner = ", ".join(self.literal(v) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if isinstance(value, list):
            return "[" + ", ".join(self.literal(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.literal(k)}: {self.literal(v)}"
                                   for k, v in value.items()) + "}"
        if isinstance(value, runtime.Opaque):
            self.notes.append(f"an expected value the trace could not represent: {value!r}")
        return repr(value)

    def call_args(self, args: Sequence[object], kwargs: Sequence[Tuple[str, object]]) -> str:
        parts = [self.literal(a) for a in args]
        if all(k.isidentifier() and not keyword.iskeyword(k) for k, _ in kwargs):
            parts += [f"{k}={self.literal(v)}" for k, v in kwargs]
        elif kwargs:
            parts.append("**" + self.literal(dict(kwargs)))
        return ", ".join(parts)

    def throw_args(self, op: Throw) -> str:
        if op.style == "exc_info":
            self.imports.add("sys")
            return "*sys.exc_info()"
        if op.style == "none" or op.exc is None:
            return ""
        cls = self.exc_class(op.exc.type)
        if op.style == "class":
            return cls
        if op.style == "class_args":
            return f"{cls}, {self.call_args(op.exc.args, ())}"
        return f"{cls}({self.call_args(op.exc.args, ())})"

    def new_exc(self, exc: Exc) -> str:
        return f"{self.exc_class(exc.type)}({self.call_args(exc.args, ())})"

    # -- outcomes of one op --------------------------------------------------------------

    def outcome(self, who: str, pc: int, statement: str, what: str,
                expression: Optional[str] = None) -> Tuple[List[str], bool]:
        """Lines performing ``statement`` (or evaluating ``expression``) and checking what
        the model says it does; True when the script goes on after it."""
        events = self.events(who, pc)
        prefix = "" if who == MAIN else f"{who}: "
        for i, kind, payload in events:
            if kind == "unbound":
                return [f"# {what}: skipped, {payload} is not bound here",
                        *self.sync(i, prefix + what)], True
            if kind == "value" and expression is not None:
                return [f"check({prefix + what!r}, {expression}, {self.literal(payload)})",
                        *self.sync(i, prefix + what)], True
            if kind == "caught":
                assert isinstance(payload, ExcValue)
                cls = self.exc_class(payload.type)
                if payload.args is None:
                    got, want = "type(e)", cls
                else:
                    got, want = "(type(e), e.args)", f"({cls}, {self.literal(tuple(payload.args))})"
                return ["try:", f"    {statement}", "except Exception as e:",
                        *("    " + line for line in self.sync(i, prefix + what)),
                        f"    check({prefix + what + ' raised'!r}, {got}, {want})", "else:",
                        f"    fail({prefix + what + ' raised nothing'!r})"], True
            if kind in ("done", "value"):
                return [statement, *self.sync(i, prefix + what)], True
        # No completion: the greenlet never comes back here.
        if self.finalizing:
            return [statement], False  # what escapes a finalizer is unraisable
        if self.short and self.died_at.get(who, 0) > self.main_end:
            return [statement, f"# {who} stays suspended here"], False
        if self.killed(who) and not self.resurrecting:
            self.need("seen")
            return ["try:", f"    {statement}", "except greenlet.GreenletExit:",
                    f"    seen.append({who + ' killed'!r})", "    raise",
                    f"fail({prefix + what + ' returned: expected ' + who + ' killed there'!r})"
                    ], False
        died = self.died.get(who)
        if died is not None:
            message = f"{prefix}{what} returned: expected it to raise {died.type}"
            return [statement, f"fail({message!r})"], False
        return [statement, f"fail({prefix + what + ' returned: expected it never to'!r})"], False

    # -- scripts ---------------------------------------------------------------------------

    def block(self, who: str, pc: int, ops: Sequence[Op]) -> Tuple[List[str], bool]:
        """The ops of a script or block starting at flat index ``pc``."""
        lines: List[str] = []
        for op in ops:
            if self.unreached(who, pc, op):
                lines.append("# (the rest is not reached)")
                return lines, False
            render = _OPS.get(type(op))
            if render is None:  # a family's op type this module does not know (yet)
                name = type(op).__name__
                self.notes.append(f"{name}: no plain rendering, the script stops before it")
                lines.append(f"# ({name}: not rendered plainly; the rest is not either)")
                return lines, False
            more, goes_on = render(self, who, pc, op)
            lines += more
            pc += span(op)
            if not goes_on:
                return lines, False
        return lines, True

    def unreached(self, who: str, pc: int, op: Op) -> bool:
        """The model records nothing for this op or anything in it: control never gets
        there (suspending ops without an event are handled by ``outcome``)."""
        if any(isinstance(o, (Switch, Throw, Return, Raise)) for o in ir.walk([op])):
            return False  # ``outcome`` says where control stops
        return not any(self.at.get((who, p)) for p in range(pc, pc + span(op)))

    def run_function(self, name: str, script: Sequence[Op]) -> List[str]:
        head = [f"def run_{self.ref(name)}(*args, **kwargs):"]
        if name not in self.start:
            return [*head, f"    fail({name + ' started: expected it never to'!r})"]
        body: List[str] = []
        start_index = next(i for i, e in enumerate(self.expected)
                           if e[0] == name and e[2] == "start")
        body += self.sync(start_index, f"{name} starts")
        self.need("started")
        body += [f"started.append({name!r})",
                 f"check({name + ' started with'!r}, (args, kwargs), "
                 f"{self.literal(self.start[name])})"]
        lines, goes_on = self.block(name, 0, script)
        body += lines
        if goes_on and not any(isinstance(op, (Return, Raise)) for op in script):
            body += self.returning(name, len(ir.flatten(script)))
        assigned = sorted({self.ref(n) for n in _assigned(script, name)})
        if assigned:
            body.insert(0, "global " + ", ".join(assigned))
        return head + ["    " + line for line in body]

    def returning(self, who: str, pc: int) -> List[str]:
        for i, kind, _ in self.events(who, pc):
            if kind == "return":
                return self.sync(i, f"{who} returns")
        return []

    def main_lines(self) -> List[str]:
        lines, _ = self.block(MAIN, 0, self.program.main)
        lines = _body(lines)
        end = len(ir.flatten(self.program.main))
        for i, kind, _ in self.events(MAIN, end):
            if kind == "return":
                lines += self.sync(i, "main's script ends")
        if MAIN in self.died:
            died = self.died[MAIN]
            index = next(i for i, e in enumerate(self.expected)
                         if e[0] == MAIN and e[2] == "died")
            cls = self.exc_class(died.type)
            want = cls if died.args is None else f"({cls}, {self.literal(tuple(died.args))})"
            got = "type(e)" if died.args is None else "(type(e), e.args)"
            lines = ["try:", *("    " + line for line in lines),
                     "except BaseException as e:  # main's script ends with an exception",
                     *("    " + line for line in self.sync(index, "main's script ends")),
                     f"    check(\"main's script raised\", {got}, {want})",
                     "else:", "    fail(\"main's script raised nothing\")"]
        if "tracers" in self.needs:
            lines.append("greenlet.settrace(None)  # tracing ends with main's script")
        return lines

    def teardown(self) -> List[str]:
        """The end of the program: what it still holds is dropped, in name order, with
        the kills and finalizers that causes and, for leaks, which greenlets exist."""
        last_alive = max((i for i, e in enumerate(self.expected) if e[2] == "alive"),
                         default=None)
        begin = self.main_end + 1
        happens = any(e[2] not in ("teardown", "alive") for e in self.expected[begin:])
        if self.short or (not happens and not self.liveness):
            return []
        lines = ["# The end: the program drops what it still holds, in name order."]
        for i, e in enumerate(self.expected):
            if e[2] == "teardown":
                lines += [f"del {self.ref(str(e[3]))}",
                          *self.sync(i, f"after del {e[3]}", always=True)]
        if self.liveness and last_alive is not None and last_alive >= begin - 1:
            lines += self.sync(last_alive, "at the end")
            lines.append(f"check_alive('greenlets left at the end', "
                         f"{list(self.expected[last_alive][3] or ())!r})")
        return lines


#: Names the file defines: a greenlet may not be held under one of them.
_RESERVED = {"greenlet", "main", "check", "fail", "seen", "check_seen", "Exc", "label",
             "names", "refs", "check_alive", "stack", "handled", "in_flight", "tracer",
             "raising_tracer", "in_thread", "Held", "a", "b", "e", "x", "y", "dead", "os", "sys",
             "gc",
             "weakref", "threading", "time", "contextvars", "importlib", "implementation",
             "FuzzError", "args", "kwargs", "k", "v", "problem", "finalizers"}


def _assigned(ops: Sequence[Op], me: str) -> Set[str]:
    """Greenlet globals a function of greenlet ``me`` binds or deletes (it declares them
    ``global``), not counting nested functions (recursion levels, thread bodies), which
    declare their own."""
    found: Set[str] = set()
    for op in ops:
        if isinstance(op, Spawn):
            found.add(op.name)
        elif isinstance(op, Drop):
            found.add(op.target)
        elif isinstance(op, Resurrect):
            found.add(me)  # its handler registers the greenlet again
        if isinstance(op, (Handle, Finally, Resurrect)):
            found |= _assigned(op.then, me)
    return found


# -- one function per op type ------------------------------------------------------------

Rendered = Tuple[List[str], bool]


def _switch(w: _Writer, who: str, pc: int, op: Switch) -> Rendered:
    call = f"{w.ref(op.target)}.switch({w.call_args(op.args, op.kwargs)})"
    return w.outcome(who, pc, call, call, call)


def _throw(w: _Writer, who: str, pc: int, op: Throw) -> Rendered:
    call = f"{w.ref(op.target)}.throw({w.throw_args(op)})"
    return w.outcome(who, pc, call, call, call)


def _return(w: _Writer, who: str, pc: int, op: Return) -> Rendered:
    return [*w.returning(who, pc), f"return {w.literal(op.value)}"], False


def _raise(w: _Writer, who: str, pc: int, op: Raise) -> Rendered:
    if op.cause:
        w.imports.add("sys")
    return [f"raise {w.new_exc(op.exc)}" + (" from sys.exc_info()[1]" if op.cause else "")
            ], False


def _spawn(w: _Writer, who: str, pc: int, op: Spawn) -> Rendered:
    name = w.ref(op.name)
    parent = [w.ref(op.parent)] if op.parent else []
    if op.kind == "method":
        cls = f"Run{name.capitalize()}"
        w.classes.append(f"class {cls}(greenlet.greenlet):\n    run = staticmethod(run_{name})")
        make = f"{cls}({', '.join(f'parent={p}' for p in parent)})"
    elif op.kind == "init":
        w.classes.append(_INIT_CLASS)
        make = f"InitGreenlet({', '.join([repr(op.name), f'run_{name}', *parent])})"
    else:
        cls = "greenlet.greenlet"
        if op.subclass:
            w.classes.append('class SubGreenlet(greenlet.greenlet):\n    fuzz_tag = "sub"')
            cls = "SubGreenlet"
        make = f"{cls}({', '.join([f'run_{name}', *parent])})"
    lines, goes_on = w.outcome(who, pc, f"{name} = {make}", f"{name} = {make}")
    if lines and not lines[0].startswith("#"):
        if "label" in w.needs:
            lines.append(f"names[id({name})] = (weakref.ref({name}), {op.name!r})")
        if w.liveness:
            w.need("alive")
            lines.append(f"refs[{op.name!r}] = weakref.ref({name})")
    return lines, goes_on


_INIT_CLASS = '''class InitGreenlet(greenlet.greenlet):
    """Takes a tag first and keeps it in an attribute of its own."""

    def __init__(self, tag, run, parent=None):
        self.fuzz_tag = tag
        if parent is None:
            super().__init__(run)
        else:
            super().__init__(run, parent)'''


def _set_parent(w: _Writer, who: str, pc: int, op: SetParent) -> Rendered:
    value = w.literal(op.parent.value) if isinstance(op.parent, Bogus) else w.ref(op.parent)
    statement = f"{w.ref(op.target)}.parent = {value}"
    return w.outcome(who, pc, statement, statement)


def _drop(w: _Writer, who: str, pc: int, op: Drop) -> Rendered:
    events = w.events(who, pc)
    for i, kind, _ in events:
        if kind == "unbound":
            return [f"# del {op.target}: skipped, {op.target} is not bound here",
                    *w.sync(i, f"del {op.target}")], True
    done = next((i for i, kind, _ in events if kind == "done"), None)
    if done is None:
        return [f"del {w.ref(op.target)}", "fail('the del did not return')"], False
    lines = [f"del {w.ref(op.target)}"]
    alive = max((i for i in range(done) if w.expected[i][2] == "alive"), default=None)
    if alive is not None:
        lines += w.sync(alive, f"del {op.target}", always=True)
        if w.liveness:
            w.need("alive")
            lines.append(f"check_alive('greenlets left after del {op.target}', "
                         f"{list(w.expected[alive][3] or ())!r})")
    lines += w.sync(done, f"del {op.target}")
    return lines, True


def _current(w: _Writer, who: str, pc: int, op: Current) -> Rendered:
    w.need("label")
    return _recorded(w, who, pc, "current", "greenlet.getcurrent()",
                     "label(greenlet.getcurrent())")


def _recorded(w: _Writer, who: str, pc: int, kind: str, what: str,
              expression: str) -> Rendered:
    """An op whose one event records a value: ``check(what, expression, value)``."""
    prefix = "" if who == MAIN else f"{who}: "
    for i, k, payload in w.events(who, pc):
        if k == "unbound":
            return [f"# {what}: skipped, {payload} is not bound here",
                    *w.sync(i, prefix + what)], True
        if k == kind:
            return [f"check({prefix + what!r}, {expression}, {w.literal(payload)})",
                    *w.sync(i, prefix + what)], True
    return [f"fail({prefix + what + ' was expected not to be reached'!r})"], False


def _inspect(w: _Writer, who: str, pc: int, op: Inspect) -> Rendered:
    g = w.ref(op.target)
    if op.attr == "parent":
        w.need("label")
    what, expression = {
        "dead": (f"{g}.dead", f"{g}.dead"),
        "bool": (f"bool({g})", f"bool({g})"),
        "parent": (f"{g}.parent", f"label({g}.parent)"),
        "gr_frame": (f"{g}.gr_frame is None", f"{g}.gr_frame is None"),
        "run": (f"hasattr({g}, 'run')", f"hasattr({g}, 'run')"),
        "tag": (f"{g}.fuzz_tag", f"getattr({g}, 'fuzz_tag', None)"),
    }[op.attr]
    return _recorded(w, who, pc, "attr", what, expression)


def _frames(w: _Writer, who: str, pc: int, op: Frames) -> Rendered:
    w.need("stack")
    bottom = "<module>" if op.target == MAIN else f"run_{w.ref(op.target)}"
    for i, kind, payload in w.events(who, pc):
        if kind == "frames" and isinstance(payload, tuple):
            renamed = tuple("<module>" if n == "run_main" else n for n in payload)
            w.at[(who, pc)] = [(i, kind, renamed)]
    return _recorded(w, who, pc, "frames", f"the functions on {op.target}'s stack",
                     f"stack({w.ref(op.target)}, {bottom!r})")


def _exc_info(w: _Writer, who: str, pc: int, op: ExcInfo) -> Rendered:
    w.need("handled")
    return _recorded(w, who, pc, "exc_info", "sys.exc_info()[1] and its __context__",
                     "handled()")


def _ctx_set(w: _Writer, who: str, pc: int, op: CtxSet) -> Rendered:
    w.need("ctx")
    statement = f"{op.var}.set({w.literal(op.value)})"
    return w.outcome(who, pc, statement, statement)


def _ctx_get(w: _Writer, who: str, pc: int, op: CtxGet) -> Rendered:
    w.need("ctx")
    return _recorded(w, who, pc, "context", f"{op.var}.get()", f"{op.var}.get('<unset>')")


def _ctx_copy(w: _Writer, who: str, pc: int, op: CtxCopy) -> Rendered:
    w.need("ctx")
    statement = f"{w.ref(op.target)}.gr_context = contextvars.copy_context()"
    return w.outcome(who, pc, statement, statement)


_TRACERS = {"record": "tracer", "raise": "raising_tracer", "off": "None",
            "bounce": "bouncing_tracer"}


def _trace(w: _Writer, who: str, pc: int, op: Trace) -> Rendered:
    w.need("tracers")
    w.needs.add("main")
    previous = {None: "None", "record": "tracer", "raise": "raising_tracer",
                "bounce": "bouncing_tracer"}
    for i, kind, payload in w.events(who, pc):
        if kind == "tracer":
            w.at[(who, pc)] = [(i, kind, _Source(previous.get(payload, repr(payload))))]
    fn = _TRACERS.get(op.mode, "tracer")
    return _recorded(w, who, pc, "tracer", f"greenlet.settrace({fn})",
                     f"greenlet.settrace({fn})")


class _Source(str):
    """Source text standing for an expected value (a tracer function's name)."""

    def __repr__(self) -> str:
        return str(self)


def _body(lines: List[str]) -> List[str]:
    """A block's lines, with ``pass`` when they are only comments (or none)."""
    if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        return lines
    return [*lines, "pass"]


def _nested(w: _Writer, who: str, pc: int, ops: Sequence[Op]) -> Rendered:
    return w.block(who, pc + 1, ops)


def _done(w: _Writer, who: str, pc: int) -> Optional[int]:
    return next((i for i, kind, _ in w.events(who, pc) if kind == "done"), None)


def _handle(w: _Writer, who: str, pc: int, op: Handle) -> Rendered:
    body, goes_on = _nested(w, who, pc, op.then)
    cls = w.exc_class(op.exc.type)
    lines = ["try:", f"    raise {w.new_exc(op.exc)}", f"except {cls}:",
             *("    " + line for line in _body(body))]
    done = _done(w, who, pc)
    if goes_on and done is not None:
        lines += w.sync(done, f"{who}: the except block")
    return lines, goes_on and done is not None


def _finally(w: _Writer, who: str, pc: int, op: Finally) -> Rendered:
    w.need("in_flight")
    tried, _ = w.block(who, pc + 1, op.then[:op.split])
    at = pc + 1 + sum(span(o) for o in op.then[:op.split])
    final, goes_on = w.block(who, at, op.then[op.split:])
    var = f"leaving_{pc}"
    checked: List[str] = []
    for i, kind, payload in w.events(who, pc):
        if kind == "finally":
            if isinstance(payload, tuple):
                payload = (payload[0], payload[1],
                           tuple("<module>" if n == "run_main" else n for n in payload[2]))
            checked = [*w.sync(i, f"{who}: the finally block"),
                       f"check({'exception leaving the try block of ' + who!r}, "
                       f"in_flight({var}), {w.literal(payload)})"]
    lines = [f"{var} = None", "try:", "    try:", *("        " + x for x in _body(tried)),
             "    except BaseException as e:", f"        {var} = e", "        raise",
             "finally:", *("    " + x for x in checked), f"    {var} = None",
             *("    " + x for x in final)]
    done = _done(w, who, pc)
    if done is None:
        return lines, False
    return lines + w.sync(done, f"{who}: after the finally block"), goes_on


def _recurse(w: _Writer, who: str, pc: int, op: Recurse) -> Rendered:
    fn = f"recurse_{w.ref(who)}_{pc}"
    base = 1000 + 7 * pc + op.salt % 1000
    body, goes_on = _nested(w, who, pc, op.then)
    if op.via == "call":
        down = [f"v = {fn}(k + 1)"]
    else:
        if op.via not in w.vias:
            w.vias.append(op.via)
        down = [f"v, problem = via_{op.via}({fn}, k + 1)",
                f"check('the result of {op.via} at level %d' % k, problem, None)"]
    canaries = f"check('the locals of level %d' % k, (x, y), ({base} + k, {base} * 31 - k))"
    assigned = sorted({w.ref(n) for n in _assigned(op.then, who)})
    w.functions.append([
        f"def {fn}(k):",
        f"    \"\"\"Level k of {op.depth} of {who}'s recursion: its locals must survive "
        "the switches below.\"\"\"",
        *(["    global " + ", ".join(assigned)] if assigned else []),
        f"    x, y = {base} + k, {base} * 31 - k",
        f"    if k < {op.depth}:",
        *("        " + line for line in down),
        f"        check('the value level %d got' % k, v, {2 * base} + k + 1)",
        "    else:",
        *("        " + line for line in _body(body)),
        "    " + canaries,
        f"    return {2 * base} + k",
    ])
    done = _done(w, who, pc)
    lines = [f"{fn}(0)"]
    if done is None:
        return [*lines, "fail('the recursion returned: expected it not to')"], False
    return [*lines, *w.sync(done, f"{who}: after the recursion")], goes_on


def _in_thread(w: _Writer, who: str, pc: int, op: InThread) -> Rendered:
    w.need("in_thread")
    fn = f"thread_{w.ref(who)}_{pc}"
    body, _ = _nested(w, who, pc, op.then)
    assigned = sorted({w.ref(n) for n in _assigned(op.then, who)})
    w.functions.append([f"def {fn}():", f"    \"\"\"What {who} does in a new thread.\"\"\"",
                        *(["    global " + ", ".join(assigned)] if assigned else []),
                        *("    " + line for line in _body(body))])
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


def _thread_parent(w: _Writer, who: str, pc: int, op: ThreadParent) -> Rendered:
    statement = f"{w.ref(op.target)}.parent = greenlet.getcurrent()"
    return w.outcome(who, pc, statement, statement)


def _orphan(w: _Writer, who: str, pc: int, op: Orphan) -> Rendered:
    w.notes.append("Orphan: a greenlet of the thread left suspended when it ends is the "
                   "harness's bookkeeping (rendered as a comment)")
    return ["# (an orphan greenlet would be started here: not rendered plainly)"], True


def _finalize(w: _Writer, who: str, pc: int, op: Finalize) -> Rendered:
    events = w.events(who, pc)
    for i, kind, _ in events:
        if kind == "unbound":
            return [f"# finalizer on {op.target}: skipped, {op.target} is not bound here",
                    *w.sync(i, f"finalizer on {op.target}")], True
    w.need("seen")
    w.need("label")
    fn = f"finalizer_{w.ref(who)}_{pc}"
    w.finalizing = True
    body, _ = _nested(w, who, pc, op.then)
    w.finalizing = False
    w.functions.append([
        f"def {fn}(*_):", f"    \"\"\"Runs when {op.target} is freed.\"\"\"",
        f"    seen.append(f\"finalizer {who} {pc} runs in {{label(greenlet.getcurrent())}}\")",
        *("    " + line for line in body),
        f"    seen.append('finalizer {who} {pc} done')"])
    target = w.ref(op.target)
    if op.kind == "weakref":
        w.imports.add("weakref")
        w.needs.add("finalizers")
        attach = f"finalizers.append(weakref.ref({target}, {fn}))"
    else:
        w.need("Held")
        w.counter += 1
        attach = f"{target}.fuzz_held_{w.counter} = Held({fn})"
    done = _done(w, who, pc)
    return [attach, *(w.sync(done, f"{who}: finalizer attached") if done is not None else [])
            ], True


def _resurrect(w: _Writer, who: str, pc: int, op: Resurrect) -> Rendered:
    w.need("label")
    w.resurrecting, was = True, w.resurrecting
    body, goes_on = _nested(w, who, pc, op.then)
    w.resurrecting = was
    me = w.ref(who)
    events = w.events(who, pc)
    handler: List[str] = []
    for i, kind, payload in events:
        if kind == "resurrected":
            handler = [f"{me} = greenlet.getcurrent()  # registered again: resurrected",
                       f"names[id({me})] = (weakref.ref({me}), {who!r})",
                       *w.sync(i, f"{who} resurrects"),
                       f"check('{who}.parent when resurrected', label({me}.parent), "
                       f"{payload!r})"]
    if not handler:
        return ["try:", *("    " + line for line in _body(body)),
                "except greenlet.GreenletExit:",
                f"    fail('{who} got GreenletExit: expected it not to')"], goes_on
    switch = f"{w.ref(op.target)}.switch()"
    done = _done(w, who, pc)
    w.at[(who, pc)] = [e for e in events if e[1] in ("value", "caught", "unbound")]
    after, _ = w.outcome(who, pc, switch, switch, switch)
    w.at[(who, pc)] = events
    handler += after
    lines = ["try:", *("    " + line for line in _body(body)),
             "except greenlet.GreenletExit:", *("    " + line for line in handler)]
    if done is not None:
        lines += w.sync(done, f"{who}: after resurrecting")
    return lines, done is not None


_OPS: Dict[type, Callable[..., Rendered]] = {
    Switch: _switch, Throw: _throw, Return: _return, Raise: _raise, Spawn: _spawn,
    SetParent: _set_parent, Drop: _drop, Current: _current, Inspect: _inspect,
    Frames: _frames, ExcInfo: _exc_info, CtxSet: _ctx_set, CtxGet: _ctx_get,
    CtxCopy: _ctx_copy, Trace: _trace, Handle: _handle, Finally: _finally,
    Recurse: _recurse, InThread: _in_thread, ThreadParent: _thread_parent, Orphan: _orphan,
    Finalize: _finalize, Resurrect: _resurrect,
}


# -- the file ----------------------------------------------------------------------------


def render(program: Program, expected: Sequence[Event], *, impl: str, kind: str = "mismatch",
           title: str = "", details: Sequence[str] = (), notes: Sequence[str] = (),
           upto: Optional[int] = None) -> Plain:
    """The plain reproducer of ``program``: exit 1 at the first step where the
    implementation differs from ``expected`` (the model's events), 0 when none does.
    ``kind`` ``leak`` adds liveness checks (weak references to every greenlet);
    ``notes`` say what else the file cannot show; ``upto``, the index of the first
    divergent event, leaves the program's teardown out when the finding shows before it
    (the kills of what is left there are checks the bug report does not need)."""
    args = (program, expected, kind, upto)
    first = _write(*args, set())
    return _write(*args, first[0].needs, impl, title, details, notes)[1]


def _write(program: Program, expected: Sequence[Event], kind: str, upto: Optional[int],
           needs: Set[str], impl: str = "", title: str = "", details: Sequence[str] = (),
           notes: Sequence[str] = ()) -> Tuple[_Writer, Plain]:
    """One rendering; the second one knows from the first which helpers the file has
    (a ``del`` early in the file checks ``seen`` when anything later notes in it)."""
    w = _Writer(program, expected, liveness=kind == "leak", upto=upto)
    w.needs |= needs
    w.notes += list(notes)
    if any(isinstance(op, (Current, Trace, Finalize, Resurrect))
           or (isinstance(op, Inspect) and op.attr == "parent")
           for _, script in program.scripts() for op in ir.walk(script)):
        w.need("label")  # before spawns are rendered, which then name their greenlet
    if "unraisable" in {e[2] for e in expected}:
        w.need("seen")
        w.need("unraisable")
    runs = [w.run_function(name, script) for name, script in program.greenlets]
    main = w.main_lines()
    tail = w.teardown()
    return w, Plain(_assemble(w, program, impl, title, details, runs, main, tail),
                    tuple(dict.fromkeys(w.notes)))



def _assemble(w: _Writer, program: Program, impl: str, title: str, details: Sequence[str],
              runs: List[List[str]], main: List[str], tail: List[str]) -> str:
    uses_main = any(getattr(op, f, None) == MAIN for _, s in program.scripts()
                    for op in ir.walk(s) for f in ("target", "parent")) or "main" in w.needs \
        or "label" in w.needs
    path_impl = impl.endswith(".py")
    if path_impl:
        w.need("load")
    for helper in w.needs:
        w.imports.update(_HELPER_IMPORTS.get(helper, ()))
    if w.vias:
        w.imports.add("sys")
        if "reduce" in w.vias or "sort_cmp" in w.vias:
            w.imports.add("functools")
    if w.liveness:
        w.imports.add("weakref")
    w.imports.add("os")
    if not path_impl:
        w.imports.add("importlib")
    doc = [f"{title or 'greenfuzz finding'}: plain reproducer", *details, "",
           "Plain greenlet code: exits 1 at the first step that differs from what greenlet",
           "does (expected vs observed), 0 when none does.  It runs the implementation it",
           "was found on unless GREENFUZZ_IMPL names another"
           + (" (a module, or a .py file)." if path_impl else " (a module).")]
    for note in dict.fromkeys(w.notes):
        doc += textwrap.wrap(f"Not plain: {note}.", 88)
    docstring = '"""' + "\n".join(d.replace('"""', "'''") for d in doc).rstrip() + '\n"""'
    out = [docstring]
    imports = sorted(i for i in w.imports if i != "importlib.util" or path_impl)
    out += [f"import {m}" for m in imports]
    for helper in _HELPER_ORDER:
        if helper in w.needs:
            out += ["", _HELPERS[helper].rstrip("\n")]
    for via in w.vias:
        out += ["", _via_source(via).rstrip("\n")]
    load = "implementation" if path_impl else "importlib.import_module"
    out += ["", "", f"greenlet = {load}(os.environ.get('GREENFUZZ_IMPL', {impl!r}))"]
    if uses_main:
        out.append("main = greenlet.getcurrent()")
        if "label" in w.needs:
            out.append("names[id(main)] = (weakref.ref(main), 'main')")
    if "finalizers" in w.needs:
        out.append("finalizers = []  # weak references whose callbacks finalize")
    for lines in (*runs, *w.functions):
        out += ["", "", *lines]
    for cls in dict.fromkeys(w.classes):
        out += ["", "", cls]
    # Not a thread's own main greenlet (``main@0``, family concurrent): the file has no
    # run function recording it.
    starts = [e[0] for e in w.expected if e[2] == "start" and e[0] != MAIN and "@" not in e[0]]
    if starts:  # one that never starts has nothing else to show it
        tail = [*tail, f"check('greenlets started, in order', started, {starts!r})"]
    out += ["", "", *main, *tail, "print('OK: behaves as greenlet documents')"]
    text = "\n".join(out) + "\n"
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text
