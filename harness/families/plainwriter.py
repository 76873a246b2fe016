"""The core of plain reproducers, which the families write their ops with.

A plain reproducer (assembled by ``greenfuzz.harness.reporting.plain``) is a program
written as ordinary greenlet code, with one ``check(what, observed, expected)`` where
the model predicts something observable.  Each op type says how it is written
(``OpSpec.plain``, a ``base.PlainSpec``) in its family's module, through the
``Writer`` here: the program's predicted events indexed by op, the helpers the file
needs, and the common shapes (``outcome``: a statement and what it must do;
``recorded``: a value to compare).  This module sits with the families (below the
model) so that a family is one module; it imports nothing above them.

Helpers are small named functions written out in the file, each only when the program
needs it: the common ones here, a family's own defined by its module
(``define_helper``).
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from greenfuzz.harness.families.base import MAIN, Op, flatten, span, spec, walk
from greenfuzz.harness.target import runtime
from greenfuzz.harness.target.runtime import ExcValue

Event = Tuple[str, int, str, object]
#: What a plain rendering gives: its lines, and whether the script goes on after them.
Rendered = Tuple[List[str], bool]

#: Events that happen away from the op being performed: noted in ``seen`` where they
#: happen and compared after the next step the model records (see ``Writer.attribute``).
ELSEWHERE = ("finalizer", "finalized", "trace", "unraisable")
#: Events that begin the interpreter's exit (family shutdown): what the model records
#: from the first of them on happens after the file's last line.
EXIT_EVENTS = ("atexit", "atexit_end")


# -- helpers written out in the file, each only when the program needs it ----------------


@dataclass(frozen=True)
class Helper:
    """Source written out in the file once (``text``), the modules it imports and the
    other helpers it needs."""

    text: str
    imports: Tuple[str, ...] = ()
    needs: Tuple[str, ...] = ()


#: Every helper, in the order they appear in a file: the common ones, then the
#: families' in the order their modules define them.
HELPERS: Dict[str, Helper] = {}


def define_helper(name: str, text: str, imports: Sequence[str] = (),
                  needs: Sequence[str] = ()) -> None:
    """Add a helper a family's plain renderings ask for with ``Writer.need(name)``."""
    HELPERS[name] = Helper(text, tuple(imports), tuple(needs))


define_helper("fail", '''
def fail(message):
    print("FAIL " + message, flush=True)
    os._exit(1)  # from any greenlet or thread, past any except clause
''', imports=("os",))

define_helper("check", '''
def check(what, observed, expected):
    """Print expected vs observed and exit 1 when they differ."""
    if observed != expected:
        fail(f"{what}: expected {expected!r}, observed {observed!r}")
''', needs=('fail',))

define_helper("load", '''
def implementation(spec):
    """The module under test: a module name, or a .py file."""
    if not spec.endswith(".py"):
        return importlib.import_module(spec)
    found = importlib.util.spec_from_file_location("implementation", spec)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module
''', imports=('importlib', 'importlib.util'))

define_helper("seen", '''
seen = []  # what happened away from the step being checked: kills, finalizers, tracer calls


def check_seen(what, expected):
    check(what, seen, expected)
    seen.clear()
''', needs=('check',))

define_helper("Exc", '''
class Exc:
    """Equal to an exception of exactly this type (and these args, unless None)."""

    def __init__(self, cls, args=None):
        self.cls, self.args = cls, args

    def __eq__(self, other):
        return type(other) is self.cls and self.args in (None, other.args)

    def __repr__(self):
        return self.cls.__name__ + ("(...)" if self.args is None else repr(self.args))
''')

define_helper("FuzzError", '''
class FuzzError(Exception):
    """This script's own exception type."""
''')

define_helper("label", '''
names = {}  # id(greenlet) -> a weak reference to it, and the name this script gives it


def label(g):
    """g's name; "?" for one this script did not make (a freed one's id may be reused)."""
    ref, name = names.get(id(g), (None, "?"))
    return None if g is None else name if ref is not None and ref() is g else "?"
''', imports=('weakref',))

define_helper("alive", '''
refs = {}  # name -> weak reference to every greenlet made


def check_alive(what, expected):
    """Which greenlets still exist (after a collection, when more than expected do)."""
    def alive():
        return sorted(name for name, ref in refs.items() if ref() is not None)
    if alive() != expected:
        gc.collect()
    check(what, alive(), expected)
''', imports=('gc', 'weakref'), needs=('check',))

define_helper("started", '''
started = []  # the greenlets whose run has begun, in order
''')

define_helper("unraisable", '''
sys.unraisablehook = lambda u: seen.append(f"unraisable {type(u.exc_value).__name__}")
''', imports=('sys',))


# -- the writer --------------------------------------------------------------------------


class Writer:
    """Renders one program with its predicted events."""

    def __init__(self, program: Any, expected: Sequence[Event], liveness: bool,
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
        self.needs: Set[str] = set()
        self.need("check")
        self.imports: Set[str] = set()
        #: Source written after the helpers, by name (a recursion's helper through C).
        self.sources: Dict[str, str] = {}
        self.notes: List[str] = []
        self.classes: List[str] = []
        self.functions: List[List[str]] = []
        self.counter = 0
        #: Lines written after main's script, before the teardown (a family's report).
        self.after_main: Dict[str, Callable[[Writer], List[str]]] = {}
        #: Lines before the implementation is imported, and after the file's last check
        #: (family shutdown: the file runs itself as a child); extra docstring lines.
        self.prologue: List[str] = []
        self.epilogue: List[str] = []
        self.doc: List[str] = []
        #: How a function declares the greenlet names it binds (``nonlocal`` in a
        #: thread program written as a function, family concurrent).
        self.scope = "global"
        #: In a thread program (family concurrent): its index and the number of threads.
        self.thread: Optional[Tuple[int, int]] = None
        #: Events of each op, by (who, pc): (index in the trace, kind, payload).
        self.at: Dict[Tuple[str, int], List[Tuple[int, str, object]]] = {}
        self.start: Dict[str, object] = {}
        self.died: Dict[str, ExcValue] = {}
        self.died_at: Dict[str, int] = {}
        #: Where the interpreter's exit begins (the first of ``EXIT_EVENTS``), if it is
        #: predicted: a family that writes the exit (shutdown) checks what happens there.
        self.exit_phase: Optional[int] = next(
            (i for i, e in enumerate(self.expected) if e[2] in EXIT_EVENTS), None)
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
            if "@" in who:
                continue  # a thread program's (family concurrent): its own writer's
            if kind == "start":
                self.start[who] = payload
            if kind == "died":
                self.died[who] = payload  # type: ignore[assignment]
                self.died_at[who] = i
            if pc >= 0 and kind not in ELSEWHERE:
                self.at.setdefault((who, pc), []).append((i, kind, payload))
            if i in early:
                pending.append(f"{early[i]} killed")
            if kind == "unraisable" and pc < 0 and self.exit_phase is not None \
                    and i >= self.exit_phase:
                continue  # what atexit reports, checked with the exit
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
            if kind != "died" or "@" in who:
                continue
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
        for other in HELPERS[helper].needs:
            self.need(other)

    @staticmethod
    def ref(name: str) -> str:
        """The global a greenlet is held in (its name, when that is a usable identifier)."""
        if name == MAIN or (name.isidentifier() and not keyword.iskeyword(name)
                            and name not in taken_names()):
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

    def new_exc(self, exc: Any) -> str:
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
            plain = spec(op).plain
            if plain is None:  # a family's op type with no plain rendering
                name = type(op).__name__
                self.notes.append(f"{name}: no plain rendering, the script stops before it")
                lines.append(f"# ({name}: not rendered plainly; the rest is not either)")
                return lines, False
            more, goes_on = plain.render(self, who, pc, op)
            lines += more
            pc += span(op)
            if not goes_on:
                return lines, False
        return lines, True

    def unreached(self, who: str, pc: int, op: Op) -> bool:
        """The model records nothing for this op or anything in it: control never gets
        there (suspending ops without an event are handled by ``outcome``)."""
        if any((p := spec(o).plain) is not None and p.suspends for o in walk([op])):
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
        if goes_on and not any(spec(op).ends_script for op in script):
            body += self.returning(name, len(flatten(script)))
        body[:0] = self.declare(script, name)
        return head + ["    " + line for line in body]

    def returning(self, who: str, pc: int) -> List[str]:
        for i, kind, _ in self.events(who, pc):
            if kind == "return":
                return self.sync(i, f"{who} returns")
        return []

    def main_lines(self) -> List[str]:
        lines, _ = self.block(MAIN, 0, self.program.main)
        lines = block_body(lines)
        end = len(flatten(self.program.main))
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
        for after in list(self.after_main.values()):
            lines += after(self)
        return lines

    def declare(self, ops: Sequence[Op], me: str) -> List[str]:
        """``global`` (or ``nonlocal``) for the greenlet names a function of ``me``
        running ``ops`` binds or deletes."""
        assigned = sorted({self.ref(n) for n in assigned_names(ops, me)})
        return [f"{self.scope} " + ", ".join(assigned)] if assigned else []

    def teardown(self) -> List[str]:
        """The end of the program: what it still holds is dropped, in name order, with
        the kills and finalizers that causes and, for leaks, which greenlets exist."""
        last_alive = max((i for i, e in enumerate(self.expected)
                          if e[2] == "alive" and "@" not in e[0]), default=None)
        begin = self.main_end + 1
        happens = any(e[2] not in ("teardown", "alive") for e in self.expected[begin:])
        if self.short or self.exit_phase is not None or (not happens and not self.liveness):
            return []
        lines = ["# The end: the program drops what it still holds, in name order."]
        for i, e in enumerate(self.expected):
            if e[2] == "teardown" and "@" not in e[0]:  # not a thread program's
                lines += [f"del {self.ref(str(e[3]))}",
                          *self.sync(i, f"after del {e[3]}", always=True)]
        if self.liveness and last_alive is not None and last_alive >= begin - 1:
            lines += self.sync(last_alive, "at the end")
            lines.append(f"check_alive('greenlets left at the end', "
                         f"{list(self.expected[last_alive][3] or ())!r})")
        return lines


#: Names the file binds that no helper defines at its top level (modules it imports,
#: loop and handler variables, what the writer's own lines bind); ``taken_names`` adds
#: the helpers' names: a greenlet may not be held under any of them.
RESERVED = {"greenlet", "main", "os", "sys", "gc", "weakref", "threading", "time",
            "contextvars", "importlib", "atexit", "subprocess", "signal", "args", "kwargs",
            "k", "v", "e", "x", "y", "dead", "problem", "peers", "parked",
            "early_callbacks", "exit_status"}


def taken_names() -> FrozenSet[str]:
    """``RESERVED`` and every top-level name a helper defines: a greenlet held under one
    would replace it (a program's names are any ``schema.NAME``, ``token`` included)."""
    return _taken_names(len(HELPERS))  # families define helpers when they are imported


@lru_cache(maxsize=1)
def _taken_names(helpers: int) -> FrozenSet[str]:
    names = set(RESERVED)
    for helper in HELPERS.values():
        for node in ast.parse(helper.text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t)
                             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return frozenset(names)


def assigned_names(ops: Sequence[Op], me: str) -> Set[str]:
    """Greenlet globals a function of greenlet ``me`` binds or deletes (it declares them
    ``global``), not counting nested functions (recursion levels, thread bodies), which
    declare their own (``PlainSpec.binds``, ``PlainSpec.inline``)."""
    found: Set[str] = set()
    for op in ops:
        plain = spec(op).plain
        if plain is None:
            continue
        if plain.binds is not None:
            found.update(plain.binds(op, me))
        if plain.inline:
            found |= assigned_names(op.then, me)
    return found


# -- what per-op renderings share -----------------------------------------------------------


class Source(str):
    """Source text standing for an expected value (a tracer function's name)."""

    def __repr__(self) -> str:
        return str(self)


def block_body(lines: List[str]) -> List[str]:
    """A block's lines, with ``pass`` when they are only comments (or none)."""
    if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        return lines
    return [*lines, "pass"]


def nested(w: Writer, who: str, pc: int, ops: Sequence[Op]) -> Rendered:
    """The ops of the block of the op at ``pc``."""
    return w.block(who, pc + 1, ops)


def done(w: Writer, who: str, pc: int) -> Optional[int]:
    """The index of the ``done`` event of the op at ``pc``, if the model records one."""
    return next((i for i, kind, _ in w.events(who, pc) if kind == "done"), None)


def recorded(w: Writer, who: str, pc: int, kind: str, what: str, expression: str) -> Rendered:
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
