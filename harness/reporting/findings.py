"""Findings on disk: ``<id>.json`` with everything needed to replay, ``<id>.py`` to paste.

Files are written atomically (temporary file, then rename), so a finding is either
complete on disk or absent, even if the harness is killed while writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from greenfuzz import __version__
from greenfuzz.harness.execution import render
from greenfuzz.harness.execution.runner import Event, Observation
from greenfuzz.harness.judging.checks import Verdict, context_lines
from greenfuzz.harness.program.ir import Program, ProgramError
from greenfuzz.harness.reporting.reproduce import Reproduction
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
    #: The seed of the run that found it (None: not recorded).
    seed: Optional[int] = None

    @property
    def kind(self) -> str:
        return self.verdict.kind

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
        lines = [f"[{self.kind}] {self.id} on {self.impl} {self.impl_version}".rstrip() + where,
                 f"  program: {len(self.program.greenlets)} greenlets, "
                 f"{self.program.size()} operations"]
        lines += ["  " + line for line in self.verdict.summary.splitlines()]
        if self.reproduction is not None:
            said = "reproduced" if self.reproduction.reproduced else "NOT reproduced"
            lines.append(f"  standalone reproducer: {said} ({self.reproduction.how})")
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
        return render.reproducer(self.program, self.expected, impl=self.impl,
                                 title=f"{self.kind} found by greenfuzz", details=details)

    def save(self, directory: Path) -> List[Path]:
        """Write ``<id>.json`` and ``<id>.py``; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / f"{self.id}.json"
        py_path = directory / f"{self.id}.py"
        atomic_write(json_path, json.dumps(self.to_json(), indent=1) + "\n")
        atomic_write(py_path, self.reproducer())
        return [json_path, py_path]


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        finally:
            raise


def load_program(path: Path) -> Program:
    """A program from a finding file or a bare program file; ``ProgramError`` otherwise."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ProgramError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProgramError(f"cannot read {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProgramError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        data = data.get("program")
    try:
        return Program.from_json(data)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None
