"""Scale runs: one recipe, up to millions of greenlets, in a child process.

A ``Recipe`` is the small description Hypothesis draws and shrinks
(``greenfuzz.strategies.recipes``)
and ``greenfuzz scale`` takes from the command line; ``harness/target/scale_runtime.py`` expands
it in the target interpreter and checks every step as it goes.  This side starts that
child, reads its JSON lines (phases, progress, a finding), watches for a stall (no line
for ``stall`` seconds is a hang: progress lines come every second) and turns a signal
into a crash.  A failing recipe is shrunk by bisecting its greenlet count (and trying
the simpler settings), so a bug that needs 200,000 live greenlets is reported with the
smallest count that still shows it; the finding is saved as ``scale-<id>.json`` and a
standalone ``scale-<id>.py`` (the scale runtime pasted, plus the recipe).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from greenfuzz.harness.program.recipes import Recipe
from greenfuzz.harness.reporting.findings import write_pair
from greenfuzz.harness.target import SCALE, paste, source_path
from greenfuzz.harness.target.protocol import TextEnum, signal_name

FORMAT = "greenfuzz-scale/1"
#: The script a recipe runs with (``__main__.py scale IMPL RECIPE``), under ``--python``.
ENTRY = source_path("__main__")


class ScaleOutcome(TextEnum):
    """How a scale run ended."""

    COMPLETED = "completed"
    FINDING = "finding"  # a step did not do what the recipe's model says
    CRASH = "crash"  # killed by a signal, or an exit without the final ``done`` line
    HANG = "hang"  # no output for ``stall`` seconds


@dataclass
class ScaleResult:
    recipe: Recipe
    outcome: ScaleOutcome = ScaleOutcome.COMPLETED
    phases: List[Dict[str, Any]] = field(default_factory=list)
    finding: Optional[Dict[str, Any]] = None
    detail: str = ""
    seconds: float = 0.0
    hello: Dict[str, Any] = field(default_factory=dict)
    done: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == ScaleOutcome.COMPLETED

    @property
    def signature(self) -> str:
        if self.finding is not None:
            return f"{self.finding['kind']}:{self.finding['phase']}:{self.finding['detail']}"
        return f"{self.outcome}:{self.detail.splitlines()[0] if self.detail else ''}"


def run_recipe(recipe: Recipe, impl: str = "greenlet", python: Optional[str] = None,
               stall: float = 120.0,
               progress: Callable[[Dict[str, Any]], None] = lambda line: None) -> ScaleResult:
    """Run one recipe in a child process; every line it prints goes to ``progress``."""
    result = ScaleResult(recipe)
    start = time.monotonic()
    proc = subprocess.Popen(
        [python or sys.executable, str(ENTRY), "scale", impl, json.dumps(recipe.to_json())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    buffer = b""
    last = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                last = time.monotonic()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    _take(result, json.loads(raw), progress)
            elif time.monotonic() - last > stall:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                result.outcome = ScaleOutcome.HANG
                result.detail = f"no output for {stall:g} s (phase {_phase(result)})"
                return result
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        result.seconds = time.monotonic() - start
    err = proc.stderr.read().decode("utf-8", "replace")
    if result.finding is not None:
        result.outcome = ScaleOutcome.FINDING
    elif proc.returncode < 0:
        result.outcome = ScaleOutcome.CRASH
        name = signal_name(-proc.returncode)
        result.detail = f"killed by {name} in phase {_phase(result)}\n{err[-4000:]}"
    elif proc.returncode != 0 or not result.done:
        result.outcome = ScaleOutcome.CRASH
        last_line = (err.strip().splitlines() or ["no output"])[-1]
        result.detail = f"exit status {proc.returncode}: {last_line}\n{err[-4000:]}"
    return result


def _phase(result: ScaleResult) -> str:
    return result.phases[-1]["phase"] if result.phases else "start"


def _take(result: ScaleResult, line: Dict[str, Any],
          progress: Callable[[Dict[str, Any]], None]) -> None:
    if "phase" in line:
        result.phases.append(line)
    elif "finding" in line:
        result.finding = line["finding"]
    elif "hello" in line:
        result.hello = line
    elif "done" in line:
        result.done = line
    progress(line)


def shrink(result: ScaleResult, impl: str, python: Optional[str], stall: float,
           budget: float = 600.0,
           note: Callable[[str], None] = lambda text: None) -> ScaleResult:
    """The smallest recipe found that still fails the same way: simpler settings first,
    then the smallest greenlet count by bisection (failures at scale are usually
    monotonic in the count)."""
    deadline = time.monotonic() + budget
    best = result
    signature = result.signature

    def fails(recipe: Recipe) -> Optional[ScaleResult]:
        if time.monotonic() > deadline:
            return None
        again = run_recipe(recipe, impl, python, stall)
        return again if again.signature == signature else None

    for change in ({"rounds": min(1, best.recipe.rounds)}, {"depth": 0}, {"via": "python"}):
        candidate = replace(best.recipe, **change)
        if candidate != best.recipe:
            smaller = fails(candidate)
            if smaller is not None:
                best = smaller
    low, high = 0, best.recipe.greenlets  # low passes (or is 0), high fails
    while high - low > max(1, high // 1000) and time.monotonic() < deadline:
        middle = (low + high) // 2
        note(f"shrinking: trying {middle} greenlets")
        smaller = fails(replace(best.recipe, greenlets=max(1, middle)))
        if smaller is not None:
            best, high = smaller, middle
        else:
            low = middle
    return best


def finding_id(result: ScaleResult, impl: str) -> str:
    digest = hashlib.sha1((json.dumps(result.recipe.to_json(), sort_keys=True) + impl +
                           result.signature).encode()).hexdigest()[:10]
    return f"scale-{digest}"


def save(result: ScaleResult, impl: str, directory: Path) -> List[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    ident = finding_id(result, impl)
    data = {"format": FORMAT, "id": ident, "outcome": result.outcome,
            "implementation": {"spec": impl, "version": result.hello.get("impl_version")},
            "python": {"version": result.hello.get("python"),
                       "implementation": result.hello.get("implementation")},
            "recipe": result.recipe.to_json(), "finding": result.finding,
            "detail": result.detail, "phases": result.phases}
    json_path, py_path = directory / f"{ident}.json", directory / f"{ident}.py"
    write_pair(json_path, json.dumps(data, indent=1) + "\n", py_path, reproducer(result, impl))
    return [json_path, py_path]


def reproducer(result: ScaleResult, impl: str) -> str:
    """The scale runtime with the recipe: ``python scale-<id>.py`` exits 1 (finding) or
    dies (crash) while the bug is there, 0 once it is fixed."""
    what = result.finding or {"outcome": result.outcome, "detail": result.detail}
    header = (f'"""greenfuzz scale reproducer: {result.recipe.shape}, '
              f"{result.recipe.greenlets} greenlets.\n\nFound: {json.dumps(what)}\n\n"
              "Run: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, "
              f"default {impl!r}).\n" + '"""\n\n')
    return (header + "import os\n\n" + paste(SCALE) + "\n\nRECIPE = "
            + repr(result.recipe.to_json()) + "\n\n"
            "if __name__ == '__main__':\n"
            f"    sys.exit(main([os.environ.get('GREENFUZZ_IMPL', {impl!r}), "
            "json.dumps(RECIPE)]))\n")


def available_bytes() -> int:
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover
        return 1 << 62
