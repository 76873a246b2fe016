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
    report.add_argument("--timeout", type=positive(float, "--timeout"), default=5.0,
                        help="seconds each run of the reproducer may take (default 5)")
    report.add_argument("--no-run", action="store_true",
                        help="run nothing: use what the finding recorded")


def run(args: argparse.Namespace, console: Console) -> int:
    data, finding_program = _load(args.file)
    report = Report(data, finding_program, args.file)
    text = report.markdown(run=not args.no_run, reference=args.reference,
                           reference_python=args.reference_python, timeout=args.timeout)
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
    try:
        program = Program.from_json(data.get("program"))
        data["expected"] = runtime.decode_trace(data.get("expected") or [])
        data["observed"]["trace"] = runtime.decode_trace(data["observed"].get("trace") or [])
    except (ProgramError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{path}: malformed finding: {e}") from None
    return data, program


class Report:
    """One finding, as a Markdown report."""

    def __init__(self, data: Dict[str, Any], program: Program, path: Path) -> None:
        self.data = data
        self.program = program
        self.path = path
        self.kind = str(data.get("kind", "mismatch"))
        self.id = str(data.get("id", path.stem))
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
             timeout: float) -> Tuple[Optional[Reproduction], Optional[Reproduction], str]:
        """The plain reproducer on the finding's implementation and on the reference
        (None: not run), and why the first was not run."""
        recorded = self.data.get("plain_reproduction")
        if not run:
            if isinstance(recorded, dict):
                p = PlainReproduction.from_json(recorded)
                return (Reproduction(p.reproduced, p.how, p.output),
                        Reproduction(p.reference_ok, p.reference_how), "")
            return None, None, "--no-run, and the finding recorded no run"
        with tempfile.TemporaryDirectory(prefix="greenfuzz-report-") as tmp:
            script = Path(tmp) / f"{self.id}.plain.py"
            script.write_text(self.plain.source)
            why = ""
            there: Optional[Reproduction] = None
            python, instead = self.python, ""
            if not Path(python).exists():
                here = stand_in(self.impl, self.python_version, self.impl_version)
                if here:
                    python, instead = here, (f" (under {here}: the finding's {self.python} "
                                             "is not here, and this one has the same versions)")
            if not Path(python).exists():
                why = f"its interpreter {self.python} is not here"
            elif self.impl.endswith(".py") and not Path(self.impl).exists():
                why = f"its implementation {self.impl} is not here"
            else:
                signum = (self.data.get("observed") or {}).get("signum")
                there = run_reproducer(script, kind=self.kind, impl=self.impl,
                                       python=python, timeout=timeout,
                                       signum=signum if isinstance(signum, int) else None)
                there = Reproduction(there.reproduced, there.how + instead, there.output)
            if is_reference(self.impl, python, reference, reference_python):
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
                 reference_python: Optional[str] = None, timeout: float = 5.0) -> str:
        there, ref, why = self.runs(run, reference, reference_python, timeout)
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
        if there is not None:
            shown = there.output.strip() or "(no output)"
            out += [f"On {name} under {self.python_version}: {there.how}"
                    + (" — reproduced." if there.reproduced else " — NOT reproduced."),
                    "", "```", shown[-1500:], "```", ""]
        elif why:
            out += [f"Not run on {name}: {why}.", ""]
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
