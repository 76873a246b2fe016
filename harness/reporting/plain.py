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

Each op type says how it is written (``OpSpec.plain``) in its family's module, through
the writer those share (``greenfuzz.harness.families.plainwriter``); this module
renders a program with it and assembles the file.  An op type with no plain rendering
(a new family's) ends its script in the file, and ``Plain.notes`` says so.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Tuple

from greenfuzz.harness.families.base import python_docstring
from greenfuzz.harness.families.plainwriter import HELPERS, Event, Writer
from greenfuzz.harness.program import ir
from greenfuzz.harness.program.ir import MAIN, Program


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
           notes: Sequence[str] = ()) -> Tuple[Writer, Plain]:
    """One rendering; the second one knows from the first which helpers the file has
    (a ``del`` early in the file checks ``seen`` when anything later notes in it)."""
    w = Writer(program, expected, liveness=kind == "leak", upto=upto)
    w.needs |= needs
    w.notes += list(notes)
    for _, script in program.scripts():
        for op in ir.walk(script):
            plain = ir.spec(op).plain
            for helper in plain.needs(op) if plain is not None and plain.needs else ():
                w.need(helper)  # before spawns are rendered, which then name their greenlet
    if "unraisable" in {e[2] for e in expected}:
        w.need("seen")
        w.need("unraisable")
    runs = [w.run_function(name, script) for name, script in program.greenlets]
    main = w.main_lines()
    tail = w.teardown()
    return w, Plain(_assemble(w, program, impl, title, details, runs, main, tail),
                    tuple(dict.fromkeys(w.notes)))


def _assemble(w: Writer, program: Program, impl: str, title: str, details: Sequence[str],
              runs: List[List[str]], main: List[str], tail: List[str]) -> str:
    uses_main = any(getattr(op, f, None) == MAIN for _, s in program.scripts()
                    for op in ir.walk(s) for f in ("target", "parent")) or "main" in w.needs \
        or "label" in w.needs
    path_impl = impl.endswith(".py")
    if path_impl:
        w.need("load")
    for helper in w.needs:
        w.imports.update(HELPERS[helper].imports if helper in HELPERS else ())
    if w.liveness:
        w.imports.add("weakref")
    w.imports.add("os")
    if not path_impl:
        w.imports.add("importlib")
    doc = [f"{title or 'greenfuzz finding'}: plain reproducer", *details, "",
           "Plain greenlet code: exits 1 at the first step that differs from what greenlet",
           "does (expected vs observed), 0 when none does.  It runs the implementation it",
           "was found on unless GREENFUZZ_IMPL names another"
           + (" (a module, or a .py file)." if path_impl else " (a module)."), *w.doc]
    for note in dict.fromkeys(w.notes):
        doc += textwrap.wrap(f"Not plain: {note}.", 88)
    docstring = python_docstring(doc)
    out = [docstring]
    imports = sorted(i for i in w.imports if i != "importlib.util" or path_impl)
    out += [f"import {m}" for m in imports]
    for name, helper in HELPERS.items():
        if name in w.needs:
            out += ["", "", helper.text.strip("\n")]
    for source in w.sources.values():
        out += ["", "", source.strip("\n")]
    if w.prologue:
        out += ["", "", *w.prologue]
    load = "implementation" if path_impl else "importlib.import_module"
    out += ["", "", f"greenlet = {load}(os.environ.get('GREENFUZZ_IMPL', {impl!r}))"]
    if uses_main:
        out.append("main = greenlet.getcurrent()")
        if "label" in w.needs:
            out.append("names[id(main)] = (weakref.ref(main), 'main')")
    for lines in (*runs, *w.functions):
        out += ["", "", *lines]
    for cls in dict.fromkeys(w.classes):
        out += ["", "", cls]
    before_exit = w.expected[:w.exit_phase]  # starts at exit: after the file's last line
    starts = [e[0] for e in before_exit if e[2] == "start" and e[0] != MAIN and "@" not in e[0]]
    if starts:  # one that never starts has nothing else to show it
        tail = [*tail, f"check('greenlets started, in order', started, {starts!r})"]
    done = "main's script behaves as greenlet documents; the exit follows" if w.epilogue \
        else "behaves as greenlet documents"
    out += ["", "", *main, *tail, f"print({'OK: ' + done!r})", *w.epilogue]
    text = "\n".join(out) + "\n"
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text
