"""SIGINT and SIGTERM stop a campaign within two seconds, whenever they arrive: the
summary is printed, the exit status is 130 / 143, a failure being shrunk is saved, and
no process of the run is left.

The signal is sent at many moments of a run on a mutant that a campaign finds in about
ten seconds (start-up, fuzzing, shrinking, verifying the reproducer).
``GREENFUZZ_SIGNAL_TRIES`` sets how many moments (default 8).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

from greenfuzz.harness.search import interrupts

MUTANT = Path(__file__).parent / "mutants" / "throw_hangs.py"
#: The promise: a run stops this many seconds after the signal at most.
STOP_WITHIN = 2.0


@dataclass
class Try:
    delay: float
    signum: int
    status: int
    seconds: float
    summary: bool
    leftovers: List[int]
    reported: int
    on_disk: int
    unpaired: List[str]


def _processes_tagged(tag: str) -> List[int]:
    """Processes whose environment holds ``tag`` (every descendant of the run inherits
    it, whatever session or group it moved to)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if tag.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def interrupt_once(delay: float, signum: int, out: Path, seed: int) -> Try:
    tag = f"GREENFUZZ_SIGNAL_TEST={uuid.uuid4().hex}"
    env = dict(os.environ, GREENFUZZ_SIGNAL_TEST=tag.split("=", 1)[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenfuzz", "fuzz", "--impl", str(MUTANT), "--budget", "60",
         "--out", str(out), "--seed", str(seed), "--families", "core,exceptions"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    try:
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(0.2)  # a process killed with us needs a moment to be reaped
    leftovers = _processes_tagged(tag)
    for pid in leftovers:  # the test must not leave them either
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    # Findings are <id>.json with <id>.py (and <id>.plain.py); summary.json is the run's.
    jsons = {p.stem for p in out.glob("*-*.json")}
    pys = {p.stem for p in out.glob("*-*.py") if not p.name.endswith(".plain.py")}
    return Try(delay, signum, proc.returncode, seconds, "programs run" in output, leftovers,
               len(re.findall(r"  wrote \S+\.json", output)), len(jsons & pys),
               sorted(jsons ^ pys))


@pytest.mark.slow  # eight runs interrupted over their first 14 s: about 65 s
def test_signals_stop_the_run_at_any_moment(tmp_path: Path) -> None:
    tries = int(os.environ.get("GREENFUZZ_SIGNAL_TRIES", "8"))
    # Spread over the first 14 s: start-up, fuzzing, the finding, shrinking, verifying.
    delays = [0.3 + 14.0 * i / max(1, tries - 1) for i in range(tries)]
    results = []
    for i, delay in enumerate(delays):
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        results.append(interrupt_once(delay, signum, tmp_path / f"run{i}", seed=1))
    lines = [f"{r.delay:5.1f} s {signal.Signals(r.signum).name:7} -> exit {r.status}, "
             f"stopped in {r.seconds:.2f} s, summary {r.summary}, findings reported "
             f"{r.reported} / on disk {r.on_disk}, leftovers {r.leftovers}" for r in results]
    print("\n".join(lines))
    in_time = sum(r.seconds <= STOP_WITHIN for r in results)
    print(f"tries {len(results)}, stopped in time {in_time}, "
          f"findings kept {sum(r.on_disk for r in results)}")
    for r, line in zip(results, lines):
        finished = r.status in (0, 1)  # the run ended before the signal arrived
        # Before the interpreter has started greenfuzz, the signal's default action ends
        # the process; while it imports its modules, greenfuzz ends with 128 + the signal
        # and one line (greenfuzz.console): either way nothing was started or found yet.
        early = r.delay < 1.0 and r.status in (-r.signum, 128 + r.signum) and not r.reported
        assert finished or early or r.status == 128 + r.signum, line
        assert r.seconds <= STOP_WITHIN or finished, line
        assert r.summary or early, line
        assert not r.leftovers, line
        assert not r.unpaired, line
        assert r.on_disk >= r.reported, line



@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_swallowed_by_a_gc_callback_is_raised_again() -> None:
    """The interpreter drops an exception raised in a ``gc`` callback (Hypothesis has
    one): the signal must still stop the campaign at its next check."""
    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, in the callback
            for _ in range(1000):  # bytecodes: the pending handler runs among them
                pass

    with interrupts.stop_on_signals():
        gc.callbacks.append(callback)
        try:
            gc.collect()  # "Exception ignored in: gc callback": the Interrupted is lost
        finally:
            gc.callbacks.remove(callback)
        with pytest.raises(interrupts.Interrupted) as caught:
            interrupts.check_signals()
    assert caught.value.signum == signal.SIGINT


HOLDER = {
    # A worker whose forked child spins for 60 s.
    "worker": """
from greenfuzz.harness.execution.executor import IsolatedExecutor
ex = IsolatedExecutor("greenlet", timeout=60)
ex.start()
print("ready", flush=True)
ex.run_source("def program(gl, T):\\n    while True:\\n        pass\\n", 60)
""",
    # A reproducer check of a script that spins for ever.
    "reproducer": """
import pathlib, sys
from greenfuzz.harness.reporting.reproduce import run_reproducer
script = pathlib.Path(sys.argv[1])
script.write_text("while True:\\n    pass\\n")
print("ready", flush=True)
run_reproducer(script, kind="hang", impl="greenlet", python=None, timeout=60)
""",
}


@pytest.mark.parametrize("what", sorted(HOLDER))
def test_nothing_outlives_a_killed_greenfuzz(tmp_path: Path, what: str) -> None:
    """SIGKILL leaves greenfuzz no chance to clean up: what it started must die with it
    (the worker and its children, a reproducer check: each in a session of its own)."""
    value = uuid.uuid4().hex
    env = dict(os.environ, GREENFUZZ_SIGNAL_TEST=value)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER[what], str(tmp_path / "spin.py")],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the spinning child is running now
        assert len(_processes_tagged(value)) >= 2  # greenfuzz and what it started
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 2.0
        while _processes_tagged(value) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _processes_tagged(value)
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after greenfuzz was killed: {left}"


EARLY = """
import builtins, os, signal, sys
real_import = builtins.__import__

def import_and_signal(name, *args, **kwargs):
    if name == "hypothesis" and not os.environ.get("SENT"):
        os.environ["SENT"] = "1"
        os.kill(os.getpid(), signal.{sig})  # while the engine is still being imported
    return real_import(name, *args, **kwargs)

builtins.__import__ = import_and_signal
from greenfuzz.console import main
sys.exit(main(["fuzz", "--budget", "5", "--out", sys.argv[1]]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_engine_is_imported_ends_the_command_in_one_line(
        tmp_path: Path, sig: str) -> None:
    proc = subprocess.run([sys.executable, "-c", EARLY.format(sig=sig), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + getattr(signal, sig), proc.stderr
    assert proc.stderr == f"greenfuzz: interrupted by {sig}\n"
