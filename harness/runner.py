"""Executing programs on an implementation and observing what happens.

Two ways to run, same observation:

* ``run_inprocess``: exec the rendered program in this process.  Fast; for trusted
  implementations (a segfault here ends the harness).
* ``run_forked``: fork a child per program, with a time and memory limit; the child
  sends its trace back through a pipe, and a child that dies or hangs is reported by
  signal, exit code and faulthandler output instead of taking the harness down.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import select
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from harness import render, runtime
from harness.implementations import Implementation
from harness.ir import Program

Event = Tuple[str, int, str, object]

COMPLETED, CRASH, HANG = "completed", "crash", "hang"


@dataclass(frozen=True)
class Observation:
    """What running a program did: its trace, and how the run ended."""

    trace: List[Event]
    outcome: str = COMPLETED
    detail: str = ""
    seconds: float = 0.0
    extra: Dict[str, object] = field(default_factory=dict)

    def to_json(self) -> Dict[str, object]:
        return {
            "trace": runtime.encode_trace(self.trace),
            "outcome": self.outcome,
            "detail": self.detail,
            "seconds": round(self.seconds, 6),
        }


_NAMESPACE = {"FuzzError": runtime.FuzzError, "Unbound": runtime.Unbound}
_CODE_CACHE: Dict[str, object] = {}


def compile_program(program: Program):
    """The ``program(gl, T)`` function for a program (compiled once per source text:
    Hypothesis replays the same program several times while shrinking)."""
    source = render.program_source(program)
    code = _CODE_CACHE.get(source)
    if code is None:
        if len(_CODE_CACHE) > 256:
            _CODE_CACHE.clear()
        code = compile(source, "<greenfuzz program>", "exec")
        _CODE_CACHE[source] = code
    namespace = dict(_NAMESPACE)
    exec(code, namespace)
    return namespace["program"]


def run_inprocess(program: Program, impl: Implementation) -> Observation:
    """Run in this process; anything the implementation raises past the program is
    recorded as an ``escaped`` event rather than propagated."""
    fn = compile_program(program)
    start = time.perf_counter()
    trace = runtime.execute(fn, impl.module)
    return Observation(trace=trace, seconds=time.perf_counter() - start)


def _child(program: Program, impl: Implementation, write_fd: int, err_fd: int,
           memory_limit: Optional[int]) -> None:
    """In the forked child: run, send the encoded trace, exit without cleanup."""
    try:
        faulthandler.enable(file=err_fd, all_threads=True)
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        obs = run_inprocess(program, impl)
        payload = json.dumps(obs.to_json()).encode()
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
    except BaseException as e:  # report, never fall back into the parent's code
        try:
            os.write(err_fd, f"child error: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(3)
    os._exit(0)


def run_forked(program: Program, impl: Implementation, *, timeout: float = 10.0,
               memory_limit: Optional[int] = 4 << 30) -> Observation:
    """Run in a forked child; crashes and hangs become observations, never exceptions."""
    read_fd, write_fd = os.pipe()
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the child is reaped
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        _child(program, impl, write_fd, err.fileno(), memory_limit)
    os.close(write_fd)
    chunks: List[bytes] = []
    deadline = start + timeout
    hung = False
    try:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                hung = True
                break
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    if hung:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    err.seek(0)
    stderr = err.read().decode(errors="replace")
    err.close()
    if hung:
        return Observation(trace=[], outcome=HANG, seconds=seconds,
                           detail=f"no result after {timeout:g} s; killed")
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        return Observation(trace=_partial(chunks), outcome=CRASH, seconds=seconds,
                           detail=f"killed by {signal.Signals(signum).name} ({signum})\n{stderr}",
                           extra={"signal": signal.Signals(signum).name})
    code = os.WEXITSTATUS(status)
    if code != 0 or not chunks:
        return Observation(trace=[], outcome=CRASH, seconds=seconds,
                           detail=f"exit status {code}\n{stderr}", extra={"exit": code})
    data = json.loads(b"".join(chunks))
    return Observation(trace=runtime.decode_trace(data["trace"]), outcome=data["outcome"],
                       detail=data["detail"], seconds=seconds)


def _partial(chunks: List[bytes]) -> List[Event]:
    try:
        return runtime.decode_trace(json.loads(b"".join(chunks))["trace"])
    except Exception:
        return []
