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

Shape ``random`` (``harness/target/scale_random.py``) is judged by the reference model
instead of a closed form: the child sends its events on a pipe of their own and
``lockstep.Checker`` checks each batch here while the child runs the next
(``run_random``); a finding is shrunk by cutting the operations and the greenlets of the
same seed (``shrink_random``) and, once small, becomes an ordinary program
(``program_finding``).
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

from greenfuzz.harness.program.ir import Program
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

#: A failing random stream this small becomes an ordinary program (``lockstep.to_program``).
SMALL_GREENLETS = 300
SMALL_OPERATIONS = 3_000

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
    #: After shrinking a random finding: the largest greenlet count tried that passed
    #: (the shrunk count is the smallest failing one within 0.1% of it); 0 if none.
    passing: int = 0

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
               progress: Callable[[Dict[str, Any]], None] = lambda line: None,
               checked: bool = True) -> ScaleResult:
    """Run one recipe in a child process; every line it prints goes to ``progress``.
    Shape ``random`` is checked by the reference model as it runs (``run_random``)."""
    if recipe.shape == "random":
        return run_random(recipe, impl, python, stall, progress, checked)
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


def run_random(recipe: Recipe, impl: str = "greenlet", python: Optional[str] = None,
               stall: float = 120.0,
               progress: Callable[[Dict[str, Any]], None] = lambda line: None,
               checked: bool = True) -> ScaleResult:
    """A random stream in a child process, its events checked by the reference model
    here while the child goes on (``lockstep.Checker``); the first divergence kills
    the child and is the finding.  ``checked`` False runs the same stream with nothing
    recorded (what the bench compares against)."""
    from greenfuzz.harness.search import lockstep

    result = ScaleResult(recipe)
    start = time.monotonic()
    events_r, events_w = os.pipe() if checked else (-1, -1)
    if checked:
        try:
            import fcntl
            fcntl.fcntl(events_w, 1031, 1 << 20)  # F_SETPIPE_SZ: batches in flight
        except (ImportError, OSError):
            pass
    argv = [python or sys.executable, str(ENTRY), "scale", impl, json.dumps(recipe.to_json())]
    proc = subprocess.Popen(argv + ([str(events_w)] if checked else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, pass_fds=(events_w,) if checked else ())
    if checked:
        os.close(events_w)
    assert proc.stdout is not None and proc.stderr is not None
    checker = lockstep.Checker(recipe.to_json()) if checked else None
    lines, frames = b"", b""
    open_fds = [proc.stdout.fileno()] + ([events_r] if checked else [])
    last = time.monotonic()
    try:
        with lockstep.no_cyclic_collector():
            while open_fds:
                ready, _, _ = select.select(open_fds, [], [], 1.0)
                if not ready:
                    if time.monotonic() - last > stall:
                        result.outcome = "hang"
                        result.detail = f"no output for {stall:g} s (phase random)"
                        return result
                    continue
                last = time.monotonic()
                for fd in ready:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        open_fds.remove(fd)
                    elif fd == events_r:
                        frames += chunk
                        frames = _check_frames(frames, checker)
                    else:
                        lines += chunk
                        *whole, lines = lines.split(b"\n")
                        for raw in whole:
                            _take(result, json.loads(raw), progress)
            proc.wait(timeout=30)
            if checker is not None and proc.returncode == 0:
                checker.finish()
    except lockstep.Divergence as divergence:
        result.finding = divergence.record()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if checked:
            os.close(events_r)
        result.seconds = time.monotonic() - start
    err = proc.stderr.read().decode("utf-8", "replace")
    if result.finding is not None:
        result.outcome = "finding"
        progress({"finding": result.finding})
    elif proc.returncode < 0:
        result.outcome = "crash"
        name = signal.Signals(-proc.returncode).name
        result.detail = f"killed by {name}\n{err[-4000:]}"
    elif proc.returncode != 0 or not result.done:
        result.outcome = "crash"
        last_line = (err.strip().splitlines() or ["no output"])[-1]
        result.detail = f"exit status {proc.returncode}: {last_line}\n{err[-4000:]}"
    if checker is not None:
        result.done["checked_events"] = checker.taken
    return result


def _check_frames(buffer: bytes, checker: Any) -> bytes:
    """Feed every whole frame in ``buffer`` (``scale_random.frame_sink``) to the
    checker; the rest is returned."""
    import marshal
    import struct

    at = 0
    while len(buffer) - at >= 4:
        size = struct.unpack_from("<I", buffer, at)[0]
        if len(buffer) - at - 4 < size:
            break
        checker.take(marshal.loads(buffer[at + 4:at + 4 + size]))
        at += 4 + size
    return buffer[at:]


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
    if result.recipe.shape == "random":
        return shrink_random(result, impl, python, stall, budget, note)
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


def shrink_random(result: ScaleResult, impl: str, python: Optional[str], stall: float,
                  budget: float = 600.0,
                  note: Callable[[str], None] = lambda text: None) -> ScaleResult:
    """The same seed with fewer operations and fewer greenlets, while it still fails
    the same way: the stream is the same up to the point it is cut (the operations a
    greenlet is handed do not depend on the budget, and spawns past the cap become
    other operations), so the operations are cut to where the divergence showed, then
    the greenlet count is bisected (the names held at once are capped by it), then the
    operations are cut again.  Recursion is left out if it still fails without."""
    deadline = time.monotonic() + budget
    best = result
    signature = result.outcome

    def fails(recipe: Recipe) -> Optional[ScaleResult]:
        if time.monotonic() > deadline:
            return None
        again = run_recipe(recipe, impl, python, stall)
        return again if again.outcome == signature else None

    def cut(current: ScaleResult) -> ScaleResult:
        """Operations cut to those handed out by the divergence."""
        finding = current.finding or {}
        needed = int(finding.get("operations", 0))
        if 0 < needed < current.recipe.operations:
            note(f"shrinking: trying {needed} operations")
            smaller = fails(replace(current.recipe, operations=needed))
            if smaller is not None:
                return smaller
        return current

    best = cut(best)
    if best.recipe.depth:
        smaller = fails(replace(best.recipe, depth=0))
        if smaller is not None:
            best = cut(smaller)
    low, high = 0, best.recipe.greenlets  # low passes (or is 0), high fails
    while high - low > max(1, high // 1000) and time.monotonic() < deadline:
        middle = (low + high) // 2
        note(f"shrinking: trying {middle} greenlets")
        smaller = fails(replace(best.recipe, greenlets=max(1, middle),
                                live=min(best.recipe.live, max(1, middle))))
        if smaller is not None:
            best, high = smaller, middle
        else:
            low = middle
    best = cut(best)
    best.passing = low
    return best


def small_program(result: ScaleResult) -> Optional[Program]:
    """A random finding small enough for the small-program path, as an ordinary
    program (``lockstep.to_program``); None when it is larger."""
    recipe = result.recipe
    if recipe.shape != "random" or result.outcome != "finding" \
            or recipe.greenlets > SMALL_GREENLETS or recipe.operations > SMALL_OPERATIONS:
        return None
    from greenfuzz.harness.search import lockstep

    return lockstep.to_program(recipe.to_json())


def program_finding(result: ScaleResult, impl: str, out: Path,
                    note: Callable[[str], None] = lambda text: None) -> Optional[Any]:
    """A small random finding through the small-program path: the stream as an ordinary
    program, judged by the usual runner, minimized by the usual minimizer and saved with
    its readable reproducer (``Finding.save``).  None when the stream is too large,
    the program is not valid (recursions past the frame budget), or the ordinary run
    does not fail (then the scale reproducer stands)."""
    from greenfuzz.harness.execution import implementations
    from greenfuzz.harness.program.ir import ProgramError
    from greenfuzz.harness.search.campaign import CampaignConfig, judge
    from greenfuzz.harness.search.minimize import simplify

    program = small_program(result)
    if program is None:
        return None
    try:
        program.validate()
        implementation = implementations.load(impl)
    except (ProgramError, implementations.ImplementationError):
        return None
    config = CampaignConfig(impl=implementation, out=out, isolate=False)
    first = judge(program, config, None)
    if first.verdict.ok:
        return None
    note(f"minimizing the {program.size()}-op program")
    signature = first.verdict.signature
    smaller = simplify(program, lambda p: judge(p, config, None).verdict.signature
                       == signature)
    finding = judge(smaller, config, None)
    if finding.verdict.signature != signature:
        finding = first
    finding.save(out)
    return finding


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


#: The end of a random reproducer: run the stream, compare the event where it diverged.
_RANDOM_CHECK = """

RECIPE = {recipe!r}
#: The event (as the target records it) where the implementation diverged, and what
#: the reference model expected there (None: no event at all).
AT = {at!r}
EXPECTED = {expected}


def agree(want, got):
    \"\"\"Events agree; an exception the model gives no args for matches any args.\"\"\"
    if isinstance(want, list) and want[:1] == ["exc"]:
        return isinstance(got, list) and got[:2] == want[:2] and (
            want[2] is None or agree(want[2], got[2]))
    if isinstance(want, (tuple, list)):
        return isinstance(got, type(want)) and len(want) == len(got) and all(
            agree(w, g) for w, g in zip(want, got))
    if isinstance(want, dict):
        return isinstance(got, dict) and want.keys() == got.keys() and all(
            agree(want[k], got[k]) for k in want)
    return type(want) is type(got) and want == got


def check(spec):
    import io
    gl = load_implementation(spec)
    seen, found = [0], []

    def sink(events):
        for event in events:
            if seen[0] == AT:
                found.append(event)
            seen[0] += 1

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    RandomRun(gl, RECIPE, sink, io.StringIO()).run()
    observed = found[0] if found else None
    if EXPECTED is None and observed is None or agree(EXPECTED, observed):
        print("event %d agrees with the reference model: fixed" % AT)
        return 0
    print("event %d: expected %r, observed %r" % (AT, EXPECTED, observed))
    return 1


if __name__ == '__main__':
    sys.exit(check(os.environ.get('GREENFUZZ_IMPL', {impl!r})))
"""


def reproducer_random(result: ScaleResult, impl: str) -> str:
    """A random finding standalone (no greenfuzz needed): the stream and its runner
    pasted with the shrunk recipe; it exits 1 while the event where the implementation
    diverged still differs from the model's, 0 once it agrees."""
    finding = result.finding or {}
    header = (f'"""greenfuzz scale reproducer: random stream, {result.recipe.greenlets} '
              f"greenlets, {result.recipe.operations} operations.\n\nFound: "
              f"{json.dumps({k: v for k, v in finding.items() if not k.endswith('_event')})}"
              "\n\nRun: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, "
              f"default {impl!r}).\n" + '"""\n')
    return header + paste(SCALE) + _RANDOM_CHECK.format(
        recipe=result.recipe.to_json(), at=finding.get("event", 0),
        expected=finding.get("expected_event", "None"), impl=impl)


def reproducer(result: ScaleResult, impl: str) -> str:
    """The scale runtime with the recipe: ``python scale-<id>.py`` exits 1 (finding) or
    dies (crash) while the bug is there, 0 once it is fixed."""
    if result.recipe.shape == "random" and result.finding is not None:
        return reproducer_random(result, impl)
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
