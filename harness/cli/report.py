"""``greenfuzz report FINDING.json``: an upstream-ready Markdown bug report.

A maintainer wants the few lines that show the bug, the expected and observed value side
by side, what greenlet documents, and evidence that greenlet itself passes.  The report
gives the finding's plain reproducer (``greenfuzz.harness.reporting.plain``), runs it on
the implementation and interpreter the finding names (when they are still there) and on
the reference greenlet, quotes the model rule behind the expected value with its
documentation page, and says so plainly when the plain code does not reproduce the
finding (the full reproducer is then the one to attach).
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from rich.console import Console

from greenfuzz.harness.cli.common import EXIT_OK, UsageError, positive
from greenfuzz.harness.execution.render import op_comment
from greenfuzz.harness.families import registered, spec
from greenfuzz.harness.families.deliveries import pack
from greenfuzz.harness.model.core import Model
from greenfuzz.harness.program.ir import Op, Program, ProgramError, flatten, program_families
from greenfuzz.harness.reporting import findings, plain
from greenfuzz.harness.reporting.reproduce import (
    REFERENCE,
    SELF_REFERENCE,
    PlainReproduction,
    Reproduction,
    is_reference,
    run_on_reference,
    run_reproducer,
    same_interpreter,
    stand_in,
)
from greenfuzz.harness.target import runtime

DOCS = "https://greenlet.readthedocs.io/en/latest/{}.html"
#: Documentation pages the model's rules cite, as they name them.
PAGES = ("switching", "api", "greenlet_gc", "tracing", "python_threads", "contextvars",
         "creating_executing_greenlets")


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="print an upstream-ready Markdown report of a "
                                           "finding (plain reproducer, expected vs observed, "
                                           "what greenlet documents)")
    report.add_argument("file", type=Path, help="a finding's .json")
    report.add_argument("--reference", default=REFERENCE, metavar="MODULE",
                        help="the implementation the reproducer must pass on (default "
                             "greenlet, under this interpreter)")
    report.add_argument("--reference-python", default=None, metavar="PYTHON",
                        help="the interpreter to run the reference under (default this one)")
    report.add_argument("--impl", default=None, metavar="IMPL",
                        help="run the reproducer on this implementation (a module or a .py "
                             "file; default: the finding's when it is greenlet: a finding "
                             "never chooses what code runs)")
    report.add_argument("--python", default=None, metavar="PATH",
                        help="run the reproducer under this interpreter (default: this one, "
                             "when the finding was made under it or under the same versions)")
    report.add_argument("--timeout", type=positive(float, "--timeout"), default=5.0,
                        help="seconds each run of the reproducer may take (default 5)")
    report.add_argument("--no-run", action="store_true",
                        help="run nothing: use what the finding recorded")


def run(args: argparse.Namespace, console: Console) -> int:
    if args.impl and args.impl.endswith(".py") and not Path(args.impl).is_file():
        raise UsageError(f"--impl: no such implementation file: {args.impl}")
    if args.python and shutil.which(args.python) is None:
        raise UsageError(f"--python: no such interpreter: {args.python}")
    data, finding_program = _load(args.file)
    report = Report(data, finding_program, args.file)
    text = report.markdown(run=not args.no_run, reference=args.reference,
                           reference_python=args.reference_python, timeout=args.timeout,
                           impl=args.impl, python=args.python)
    console.print(text, markup=False, highlight=False)
    return EXIT_OK


def _load(path: Path) -> Tuple[Dict[str, Any], Program]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != findings.FORMAT:
        raise UsageError(f"{path}: not a greenfuzz finding (format {findings.FORMAT})")
    named = data.get("id", "finding")
    if not isinstance(named, str) or not (named == "finding"
                                          or findings.FINDING_NAME.fullmatch(named)):
        raise UsageError(f"{path}: malformed finding: id {str(named)[:60]!r} is not a "
                         "finding's name")
    for part, keys in (("implementation", ("spec", "version")),
                       ("python", ("executable", "version"))):
        fields = data.get(part, {})
        # They go into the scripts the report writes and runs: printable text only (a NUL
        # or a lone surrogate made the plain file fail to compile, or greenfuzz fail).
        if not isinstance(fields, dict) or not all(_text(fields.get(k, "")) for k in keys):
            raise UsageError(f"{path}: malformed finding: {part} is not printable text")
    if not all(_text(data.get(k, ""), limit=100_000, lines=True) for k in ("kind", "summary")):
        raise UsageError(f"{path}: malformed finding: kind or summary is not text")
    try:
        program = Program.from_json(data.get("program"))
        data["expected"] = runtime.decode_trace(data.get("expected") or [])
        data["observed"]["trace"] = runtime.decode_trace(data["observed"].get("trace") or [])
    except (ProgramError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{path}: malformed finding: {e}") from None
    return data, program


def _text(value: Any, limit: int = 1000, lines: bool = False) -> bool:
    """Whether ``value`` is a string of printable characters (and newlines, with
    ``lines``: no NUL, no lone surrogate), of at most ``limit`` characters."""
    if not isinstance(value, str) or len(value) > limit:
        return False
    return all(line.isprintable() for line in (value.split("\n") if lines else [value]))


class Report:
    """One finding, as a Markdown report."""

    def __init__(self, data: Dict[str, Any], program: Program, path: Path) -> None:
        self.data = data
        self.program = program
        self.path = path
        self.kind = str(data.get("kind", "mismatch"))
        self.id = str(data.get("id", "finding"))  # validated: a finding's name
        impl = data.get("implementation") or {}
        self.impl = str(impl.get("spec", "greenlet"))
        self.impl_version = str(impl.get("version", ""))
        py = data.get("python") or {}
        self.python = str(py.get("executable", sys.executable))
        self.python_version = str(py.get("version", ""))
        raw = "raw memory" in str(data.get("summary", ""))
        notes = ("raw memory growth shows over many runs of the program, which the "
                 "harness's memory probe makes; one plain run shows none",) if raw else ()
        upto = runtime.first_divergence(list(data["expected"]),
                                        list(data["observed"]["trace"])) \
            if data["observed"].get("outcome") == "completed" else None
        self.plain = plain.render(program, data["expected"], impl=self.impl, kind=self.kind,
                                  notes=notes, upto=upto, title=f"{self.id} found by greenfuzz",
                                  details=[f"Found on {self.impl} {self.impl_version}".rstrip()
                                           + f" under {self.python_version}."])

    # -- running ---------------------------------------------------------------------------

    def runs(self, run: bool, reference: str, reference_python: Optional[str],
             timeout: float, impl: Optional[str] = None, python: Optional[str] = None
             ) -> Tuple[Optional[Reproduction], Optional[Reproduction], str]:
        """The plain reproducer on the finding's implementation and on the reference
        (None: not run), and why the first was not run.

        A finding is data, perhaps downloaded: the implementation and interpreter it names
        run only where that is no choice of its own (greenlet, under this interpreter or
        one of the same versions); any other runs when ``impl``/``python`` (the command
        line) name it."""
        recorded = self.data.get("plain_reproduction")
        if not run:
            if isinstance(recorded, dict):
                p = PlainReproduction.from_json(recorded)
                return (Reproduction(p.reproduced, p.how, p.output),
                        Reproduction(p.reference_ok, p.reference_how), "")
            return None, None, "--no-run, and the finding recorded no run"
        target, why = impl or self.impl, ""
        if impl is None and self.impl != REFERENCE:
            why = (f"the finding names the implementation {self.impl}, and a finding never "
                   f"chooses what runs: `--impl {self.impl}` runs it")
        chosen, instead = python, ""
        if chosen is None and not why:
            if same_interpreter(self.python, sys.executable):
                chosen = sys.executable
            elif stand_in(target, self.python_version, self.impl_version):
                chosen, instead = sys.executable, (
                    f" (under {sys.executable}, of the same versions: the finding was made "
                    f"under {self.python})")
            else:
                why = (f"the finding was made under {self.python} ({self.python_version}), "
                       f"not this interpreter: `--python {self.python}` runs it there")
        with tempfile.TemporaryDirectory(prefix="greenfuzz-report-") as tmp:
            script = Path(tmp) / f"{self.id}.plain.py"
            script.write_text(self.plain.source)
            there: Optional[Reproduction] = None
            if not why:
                signum = (self.data.get("observed") or {}).get("signum")
                there = run_reproducer(script, kind=self.kind, impl=target,
                                       python=chosen, timeout=timeout,
                                       signum=signum if isinstance(signum, int) else None)
                there = Reproduction(there.reproduced, there.how + instead, there.output)
            if there is not None and is_reference(target, chosen, reference, reference_python):
                ref = Reproduction(True, SELF_REFERENCE)
            else:
                ref = run_on_reference(script, timeout=timeout, impl=reference,
                                       python=reference_python)
        if there is None and isinstance(recorded, dict):
            p = PlainReproduction.from_json(recorded)
            there = Reproduction(p.reproduced, p.how + " (recorded when found)", p.output)
        return there, ref, why

    # -- the report ----------------------------------------------------------------------

    def markdown(self, *, run: bool = True, reference: str = REFERENCE,
                 reference_python: Optional[str] = None, timeout: float = 5.0,
                 impl: Optional[str] = None, python: Optional[str] = None) -> str:
        there, ref, why = self.runs(run, reference, reference_python, timeout, impl, python)
        usable = there is not None and there.reproduced and ref is not None and ref.reproduced
        failed = _fail_line(there.output if there else "")
        name = f"{self.impl} {self.impl_version}".strip()
        title = f"{name}: {failed}" if failed else \
            f"{name}: {str(self.data.get('summary', self.kind)).splitlines()[0]}"
        out = [f"# {title}", "",
               f"- **Implementation:** `{self.impl}` {self.impl_version}".rstrip(),
               f"- **Interpreter:** {self.python_version} (`{self.python}`)",
               f"- **Found by:** greenfuzz, finding `{self.id}` ({self.kind}), a program of "
               f"{len(self.program.greenlets)} greenlet(s) and {self.program.size()} "
               "operation(s), shrunk", ""]
        out += ["## Reproducer", ""]
        if not usable:
            out += ["> **The plain reproducer below does not reproduce this finding**"
                    + (f" ({_why(there, ref, why)})" if _why(there, ref, why) else "")
                    + f"; the full reproducer `{self.id}.py` (greenfuzz's runtime and the "
                    "expected event trace) is the one to attach.", ""]
        for note in self.plain.notes:
            out.append(f"> Not plain: {note}.")
        if self.plain.notes:
            out.append("")
        out += ["```python", self.plain.source.rstrip("\n"), "```", "",
                "`python repro.py` exits 1 with a `FAIL` line at the first step that differs "
                "from greenlet, and 0 (`OK`) when none does"
                + (" (`GREENFUZZ_IMPL=module` runs it on another implementation)." if
                   not self.impl.endswith(".py") else "."), ""]
        out += ["## Expected vs observed", ""]
        if why:
            out += [f"Not run here: {why}.", ""]
        if there is not None:
            shown = there.output.strip() or "(no output)"
            ran = f"{name} under {self.python_version}" if why else \
                f"{impl or self.impl} under `{python}`" if python else \
                f"{impl or name} under {self.python_version}"
            out += [f"On {ran}: {there.how}"
                    + (" — reproduced." if there.reproduced else " — NOT reproduced."),
                    "", "```", shown[-1500:], "```", ""]
        out += ["greenfuzz's verdict (event trace of the full program):", "", "```",
                str(self.data.get("summary", "")).rstrip(), "```", ""]
        out += ["## What greenlet documents", ""]
        out += self.citation() or ["(greenfuzz's model has no citation for this step.)"]
        out += ["", f"## {reference} itself", ""]
        if ref is None:
            out.append("Not run (`--no-run` and nothing recorded).")
        elif ref.how == SELF_REFERENCE:
            out.append(f"The finding's implementation is {reference} itself, under the same "
                       "interpreter: " + ("the failure above is its own." if there is not None
                                          and there.reproduced else "there is no other "
                                          f"{reference} to run the reproducer on."))
        else:
            said = _last_line(ref.output)
            out.append(f"On {_reference_name(reference, reference_python)} the same "
                       f"reproducer {'passes' if ref.reproduced else 'does NOT pass'} "
                       f"({ref.how}{': ' + said if said else ''}).")
        return "\n".join(out) + "\n"

    def citation(self) -> List[str]:
        """The model rules behind the first divergent event, quoting greenlet's docs."""
        expected, observed = self.data["expected"], self.data["observed"]["trace"]
        at = runtime.first_divergence(list(expected), list(observed))
        if at is None:
            at = len(expected) - 1
        event = expected[at] if at < len(expected) else (observed[at] if at < len(observed)
                                                         else None)
        if event is None:
            return []
        who, pc, kind, payload = event
        op: Optional[Op] = None
        try:
            script = flatten(self.program.script(who))
            op = script[pc] if 0 <= pc < len(script) else None
        except KeyError:
            pass
        lines = [f"The first step that differs: {who}"
                 + (f", `{op_comment(op)}`" if op is not None else "")
                 + f"; greenfuzz expects `{kind} {payload!r}` there, as greenlet does."]
        for rule, doc in rules_for(kind, op, payload, program_families(self.program)):
            lines += ["", f"greenfuzz's model, `{rule}`:", ""]
            lines += ["> " + line if line else ">" for line in doc.splitlines()]
            # Cited as "switching docs: ..."; a name with "_" cannot be a plain word.
            pages = [p for p in PAGES if re.search(rf"\b{p} docs\b", doc)
                     or ("_" in p and re.search(rf"\b{p}\b", doc))]
            if pages:
                lines += ["", "Documentation: " + ", ".join(DOCS.format(p) for p in pages)]
        return lines


#: The model core's rules behind each kind of event.
CORE_RULES: Dict[str, Tuple[Callable[..., Any], ...]] = {
    "value": (Model.resolve, Model.transfer, Model.enter, Model.finish, pack),
    "caught": (Model.resolve, Model.transfer, Model.enter, Model.fail),
    "start": (Model.enter,),
    "died": (Model.collect, Model.kill, Model.finish),
    "alive": (Model.collect, Model.kill),
    "return": (Model.finish,),
    "trace": (Model.trace,),
    "teardown": (Model.teardown,),
}
#: The family hooks (``Family`` fields) that may change what an event of each kind says:
#: the hook of that name of every family the program uses is cited, a new family's too.
HOOK_RULES: Dict[str, Tuple[str, ...]] = {
    "died": ("collecting", "killing", "dying", "freeing"),
    "alive": ("collecting", "freeing"),
    "start": ("entering",),
    "value": ("resuming", "receiving"),
    "trace": ("switching",),
    "finalizer": ("collecting", "freeing"),
    "finalized": ("stepping",),
    "unraisable": ("uncaught",),
    "finally": ("dying",),
}
#: The ``OpSpec`` fields that hold an op's model rules, in the order they act.
OP_RULES = ("perform", "enter", "before", "unwinding", "ended", "leave")


def rules_for(kind: str, op: Optional[Op], payload: object,
              families: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    """(name, docstring) of the model rules that decide an event of ``kind`` at ``op``,
    read from the registry: the op's own rules (its ``OpSpec``) and the rules their
    docstrings name (``_named_rules``), the model core's rules for that kind of event,
    and the hooks into it of the ``families`` the program uses (default: all).  Their
    docstrings cite greenlet's documentation; rules without one are left out."""
    found: List[Callable[..., Any]] = []
    if op is not None:
        try:
            rules = spec(op)
        except ProgramError:
            rules = None
        for fn in (getattr(rules, name) for name in OP_RULES if rules is not None):
            if fn is not None:
                found += [fn, *_named_rules(fn)]
    found += CORE_RULES.get(kind, ())
    for family in registered():
        if families is None or family.name in families:
            found += [getattr(family, name) for name in HOOK_RULES.get(kind, ())]
    cited: List[Tuple[str, str]] = []
    for fn in dict.fromkeys(fn for fn in found if fn is not None):
        doc = inspect.getdoc(fn)
        if doc:
            module = fn.__module__.removeprefix("greenfuzz.harness.")
            cited.append((f"{module}.{fn.__qualname__}", doc))
    return cited


def _named_rules(fn: Callable[..., Any]) -> List[Callable[..., Any]]:
    """The rules ``fn``'s docstring names: ``Model.collect`` (the model core's) or
    ``thrown`` (a function of its own module)."""
    module = sys.modules.get(fn.__module__)
    found = []
    for owner, name in re.findall(r"``(Model\.)?(\w+)``", inspect.getdoc(fn) or ""):
        rule = getattr(Model if owner else module, name, None)
        if inspect.isfunction(rule) and rule is not fn:
            found.append(rule)
    return found


def _fail_line(output: str) -> str:
    """The reproducer's ``FAIL`` line, else the exception that escaped it."""
    for line in output.splitlines():
        if line.startswith("FAIL "):
            return line[len("FAIL "):]
    last = _last_line(output)
    if re.match(r"^[\w.]*(error|exception|exit)\b", last, re.IGNORECASE):
        return "uncaught " + last
    return ""


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _why(there: Optional[Reproduction], ref: Optional[Reproduction], why: str) -> str:
    if there is None:
        return why
    if not there.reproduced:
        return f"on the implementation: {there.how}"
    if ref is not None and not ref.reproduced:
        return f"it fails on the reference too: {ref.how}"
    return ""


def _reference_name(reference: str, python: Optional[str]) -> str:
    if python:
        return f"{reference} under {python}"
    version = ""
    try:
        module = __import__(reference)
        version = str(getattr(module, "__version__", ""))
    except Exception:  # only for the label: any import failure leaves it unversioned
        pass
    return (f"{reference} {version}".strip() + f" under {platform.python_implementation()} "
            f"{platform.python_version()}")


__all__: Sequence[str] = ["Report", "add_parser", "rules_for", "run"]
