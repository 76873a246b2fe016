"""Findings on disk: ``<id>.json`` with everything needed to replay, ``<id>.py`` to paste,
and ``<id>.plain.py``, the same program as plain greenlet code (``reporting.plain``).

Both files are written to temporary names first, then renamed, the reproducer first: a
``.json`` on disk always has its ``.py``.  A kill between the two renames leaves a
``.py`` alone, and a kill before them temporary files (``.<name>.<pid>.<random>.tmp``);
``clean_stale`` removes both at the start of the next run.  Files get the ordinary mode
(0666 less the umask), not the 0600 of temporary files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import tempfile
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from greenfuzz import __version__
from greenfuzz.harness.execution import render
from greenfuzz.harness.execution.lifetime import running
from greenfuzz.harness.execution.runner import Event, Observation
from greenfuzz.harness.judging.checks import Verdict, context_lines
from greenfuzz.harness.program import schema
from greenfuzz.harness.program.ir import Program, ProgramError
from greenfuzz.harness.reporting import plain as plain_code
from greenfuzz.harness.reporting.reproduce import SELF_REFERENCE, PlainReproduction, Reproduction
from greenfuzz.harness.target import runtime

FORMAT = "greenfuzz-finding/1"


@dataclass(frozen=True)
class Finding:
    """A program on which an implementation disagrees with the model."""

    program: Program
    expected: Sequence[Event]
    observation: Observation
    verdict: Verdict
    impl: str
    impl_version: str = ""
    #: The interpreter programs ran under, when not the harness's own, and its version.
    python: Optional[str] = None
    python_version: str = ""
    #: Whether the standalone reproducer did the same in a fresh process (None: not run).
    reproduction: Optional[Reproduction] = None
    #: The same for the plain reproducer (``<id>.plain.py``), and on greenlet.
    plain_reproduction: Optional[PlainReproduction] = None
    #: False when the run was interrupted before the program was shrunk.
    shrunk: bool = True
    #: The seed of the run that found it (None: not recorded).
    seed: Optional[int] = None

    @property
    def kind(self) -> str:
        return self.verdict.kind

    @property
    def confirmed(self) -> bool:
        """The standalone reproducer did the same in a fresh process; only a confirmed
        finding fails a run.  (Not checked, ``--no-verify``: the run is trusted.)"""
        return self.reproduction is None or self.reproduction.reproduced

    @property
    def id(self) -> str:
        digest = hashlib.sha1(
            (self.kind + self.program.dumps() + self.impl).encode()
        ).hexdigest()
        return f"{self.kind}-{digest[:10]}"

    def to_json(self) -> Dict[str, Any]:
        return {
            "format": FORMAT,
            "greenfuzz": __version__,
            "seed": self.seed,
            "id": self.id,
            "kind": self.kind,
            "summary": self.verdict.summary,
            "implementation": {"spec": self.impl, "version": self.impl_version},
            "python": self.python_info(),
            "program": self.program.to_json(),
            "expected": runtime.encode_trace(self.expected),
            "observed": self.observation.to_json(),
            "reproduction": self.reproduction.to_json() if self.reproduction else None,
            "plain_reproduction": (self.plain_reproduction.to_json()
                                   if self.plain_reproduction else None),
            "shrunk": self.shrunk,
            "confirmed": self.confirmed,
        }

    def python_info(self) -> Dict[str, str]:
        """The interpreter the programs ran under (the harness's own unless --python)."""
        if self.python:
            return {"executable": self.python, "version": self.python_version}
        return {"executable": sys.executable,
                "version": f"{platform.python_implementation()} {platform.python_version()}"}

    def report(self) -> str:
        """A few lines for the terminal."""
        where = f" under {self.python_version}" if self.python else ""
        mark = "" if self.confirmed else " (unconfirmed: not reproduced in a fresh process)"
        lines = [f"[{self.kind}] {self.id} on {self.impl} {self.impl_version}".rstrip() + where
                 + mark,
                 f"  program: {len(self.program.greenlets)} greenlets, "
                 f"{self.program.size()} operations"]
        lines += ["  " + line for line in self.verdict.summary.splitlines()]
        if not self.shrunk:
            lines.append("  not shrunk: the run was interrupted while shrinking it")
        if self.reproduction is not None:
            said = "reproduced" if self.reproduction.reproduced else "NOT reproduced"
            lines.append(f"  standalone reproducer: {said} ({self.reproduction.how})")
        lines += self.plain_report()
        return "\n".join(lines)

    def reproducer(self) -> str:
        details = [f"Kind: {self.kind}", f"Implementation: {self.impl} {self.impl_version}",
                   f"Python: {self.python_info()['version']} ({self.python_info()['executable']})",
                   "", *self.verdict.summary.splitlines()]
        if self.verdict.index is not None:
            details += ["", *context_lines(self.expected, self.observation.trace,
                                           self.verdict.index)]
        from greenfuzz.harness.judging import memcheck

        if memcheck.is_raw(self.verdict):
            return memcheck.reproducer(self.program, self.verdict, self.observation,
                                       impl=self.impl, title=f"{self.kind} found by greenfuzz",
                                       details=details)
        from greenfuzz.harness.execution import at_exit

        if at_exit.at_exit(self.program):
            from greenfuzz.harness.families.shutdown import expected_status

            return at_exit.script(self.program, self.expected, impl=self.impl,
                                  want_status=expected_status(self.program, self.expected),
                                  title=f"{self.kind} found by greenfuzz", details=details)
        return render.reproducer(self.program, self.expected, impl=self.impl,
                                 title=f"{self.kind} found by greenfuzz", details=details)

    def save(self, directory: Path) -> List[Path]:
        """Write ``<id>.json`` and ``<id>.py`` (together or not at all); their paths."""
        json_path = directory / f"{self.id}.json"
        py_path = directory / f"{self.id}.py"
        plain = self.plain()
        extra = [] if plain is None else [(directory / f"{self.id}.plain.py", plain.source)]
        write_together([*extra, (py_path, self.reproducer()),
                        (json_path, json.dumps(self.to_json(), indent=1) + "\n")])
        return [json_path, py_path, *(path for path, _ in extra)]

    # -- the plain reproducer (``greenfuzz.harness.reporting.plain``) ----------------------

    def plain(self) -> Optional[plain_code.Plain]:
        """The program as plain greenlet code (None for the parked-greenlet scenario,
        which has no program)."""
        if not self.program.main and not self.program.greenlets:
            return None
        from greenfuzz.harness.judging import memcheck

        notes = ("raw memory growth shows over many runs of the program, which the "
                 "harness's memory probe makes; one plain run shows none",) \
            if memcheck.is_raw(self.verdict) else ()
        where = f" under {self.python_version}" if self.python else ""
        return plain_code.render(
            self.program, self.expected, impl=self.impl, kind=self.kind, notes=notes,
            upto=self.verdict.index,
            title=f"{self.id} found by greenfuzz",
            details=[f"Found on {self.impl} {self.impl_version}".rstrip() + where + "."])

    def save_plain(self, directory: Path) -> List[Path]:
        """Write ``<id>.plain.py`` (when there is a program)."""
        found = self.plain()
        if found is None:
            return []
        path = directory / f"{self.id}.plain.py"
        atomic_write(path, found.source)
        return [path]

    def plain_report(self) -> List[str]:
        """Lines on the plain reproducer for ``report``: whether it is the one to use."""
        p = self.plain_reproduction
        if p is None:
            return []
        if p.usable:
            where = ("greenlet's own bug" if p.reference_how == SELF_REFERENCE
                     else "passes on greenlet")
            return [f"  plain reproducer ({self.id}.plain.py): reproduced ({p.how}), {where}"]
        why = p.how if not p.reproduced else f"on greenlet: {p.reference_how}"
        return [f"  plain reproducer ({self.id}.plain.py): NOT usable ({why}); use the full "
                f"reproducer {self.id}.py"] + [f"    not plain: {n}" for n in p.notes]


#: Names of finding files: ``<kind>-<10 hex digits>`` (``Finding.id`` and the like).
FINDING_NAME = re.compile(r"[a-z][a-z0-9_:.-]*-[0-9a-f]{10}")
#: Temporary files: ``.<final name>.<writer's pid>.<random>.tmp``.
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[^.]+\.tmp")


def _mode() -> int:
    """The mode a plain ``open(..., "w")`` would give: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_temporary(path: Path, text: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        os.fchmod(fd, _mode())
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all."""
    tmp = _write_temporary(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_pair(json_path: Path, json_text: str, py_path: Path, py_text: str) -> None:
    """A finding's two files (see ``write_together``)."""
    write_together([(py_path, py_text), (json_path, json_text)])


def write_together(files: Sequence[Tuple[Path, str]]) -> None:
    """A finding's files, all written before any is renamed into place, in order: the
    ``.json`` comes last, so whoever sees it finds its reproducers."""
    files[0][0].parent.mkdir(parents=True, exist_ok=True)
    temporaries: List[Path] = []
    try:
        for path, text in files:
            temporaries.append(_write_temporary(path, text))
        for (path, _), tmp in zip(files, temporaries):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temporaries:
            with suppress(OSError):
                os.unlink(tmp)
        raise


def clean_stale(directory: Path) -> List[str]:
    """Remove what an earlier run killed while writing left in ``directory``: temporary
    files of processes that no longer run, and reproducers whose ``.json`` never came.
    Returns the names removed."""
    removed: List[str] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for path in entries:
        temporary = TEMPORARY_NAME.fullmatch(path.name)
        if temporary is not None:
            if running(int(temporary["pid"])):
                continue  # another greenfuzz is writing it now
        elif not (path.suffix == ".py" and FINDING_NAME.fullmatch(_finding_stem(path))
                  and not path.with_name(_finding_stem(path) + ".json").exists()):
            continue
        with suppress(OSError):
            path.unlink()
            removed.append(path.name)
    return removed


def _finding_stem(path: Path) -> str:
    """``<id>`` of ``<id>.py`` and of ``<id>.plain.py``."""
    stem = path.stem
    return stem[:-len(".plain")] if stem.endswith(".plain") else stem


def load_program(path: Path) -> Program:
    """A program from a finding file or a bare program file; ``ProgramError`` otherwise.

    The file is data: its size, nesting and every field are checked
    (``greenfuzz.harness.program.schema``) before a program is built from it, and the
    program is rendered once (rendering refuses what is not an identifier) before anything
    runs it."""
    data = schema.read(path, "finding")
    try:
        program = Program.from_json(schema.program_data(data))
        render.program_source(program)
        return program
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None


def verify_plain(finding: Finding, script: Path, *, python: Optional[str],
                 timeout: float) -> Finding:
    """The finding with its plain reproducer run standalone on its implementation and on
    greenlet (``reproduce.verify_plain``); unchanged when it has none."""
    from greenfuzz.harness.reporting.reproduce import verify_plain as run_plain

    found = finding.plain()
    if found is None or not script.exists():
        return finding
    signum = finding.observation.extra.get("signum")
    outcome = run_plain(script, kind=finding.kind, impl=finding.impl, python=python,
                        timeout=timeout, signum=signum if isinstance(signum, int) else None,
                        notes=found.notes)
    return replace(finding, plain_reproduction=outcome)
