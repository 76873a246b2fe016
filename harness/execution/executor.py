"""Running programs in a separate worker process, on any interpreter.

``IsolatedExecutor`` starts ``harness/target/worker.py`` once (through the folder's
``__main__.py``, which loads it by path), under the interpreter the
implementation lives in (``python=``, by default this one), and sends it one program at a
time.  The worker forks a small child per program, so a program that segfaults or hangs
costs a child, not the worker nor the harness; where fork does not exist the worker runs
programs itself and this side restarts it after a crash.  Every wait here has a deadline:
a worker that stops answering within the time limit plus ``margin`` is killed (with
anything it forked), the program is reported as a ``hang``, and the next ``run`` starts a
fresh worker.  See ``harness/target/worker.py`` for the protocol.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from types import TracebackType
from typing import Any, Dict, Optional, Tuple, Type

from greenfuzz.harness.execution import at_exit, lifetime, render
from greenfuzz.harness.execution.implementations import ImplementationError
from greenfuzz.harness.execution.runner import Observation
from greenfuzz.harness.execution.zygote import ExitZygote
from greenfuzz.harness.program.ir import Program
from greenfuzz.harness.target import codec, loader, source_path
from greenfuzz.harness.target.protocol import (
    HEADER,
    PROTOCOL,
    Outcome,
    complete_frame,
    ending,
    frame,
    signal_name,
)

#: The script the worker is started with: it loads ``harness/target`` by path.
ENTRY_PATH = source_path("__main__")
#: Most bytes of worker stderr kept in memory (the end is kept).
STDERR_LIMIT = 256 * 1024
#: How long the worker may take, past the time limit, to kill a hung child and reap it.
KILL_SLACK = 0.5
#: Most bytes of one request's worker stderr put into an observation.
DETAIL_LIMIT = 32 * 1024


class WorkerError(RuntimeError):
    """The worker refused a request: a harness bug, not something the implementation did."""


class _Timeout(Exception):
    pass


class _WorkerGone(Exception):
    pass


def _tail(data: bytes, limit: int) -> str:
    text = bytes(data[-limit:]).decode("utf-8", "replace")
    if len(data) > limit:
        text = f"[... {len(data) - limit} bytes left out ...]\n" + text
    return text


class IsolatedExecutor:
    """Runs programs on ``impl_spec`` in a worker process under ``python``.

    ``timeout`` is the default time limit per program, ``memory_limit`` the address-space
    limit (bytes, None for none) of each program's child.  ``programs_per_child`` > 1 lets
    one forked child run that many programs in turn (much faster where page faults are
    dear, but programs then start from whatever the previous ones left, as in-process;
    a crash or hang is confirmed in a fresh child).  ``fork=False`` makes the worker run
    programs itself (the fallback for platforms without fork); ``margin`` is how much
    longer than the time limit the worker may take to answer before it is killed.
    ``exit_zygote`` runs programs that end with the interpreter's exit in children of a
    pre-started interpreter (``zygote.py``) rather than a fresh interpreter each.
    """

    def __init__(self, impl_spec: str, *, python: str = sys.executable, timeout: float = 2.0,
                 memory_limit: Optional[int] = 4 << 30, programs_per_child: int = 1,
                 fork: bool = True, margin: float = 1.0,
                 startup_timeout: float = 60.0, exit_zygote: bool = True) -> None:
        if programs_per_child < 1:
            raise ValueError("programs_per_child must be at least 1")
        self.impl_spec = impl_spec
        self.python = python
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.programs_per_child = programs_per_child
        self.fork = fork
        self.margin = margin
        self.startup_timeout = startup_timeout
        #: The worker's hello: interpreter version, implementation version, fork or not.
        self.info: Dict[str, Any] = {}
        #: How many workers have been started (1 + restarts).
        self.starts = 0
        self._proc: Optional[subprocess.Popen] = None
        self._poller: Optional[select.poll] = None
        self._out = bytearray()
        self._err_open = False
        self._request_err = bytearray()
        self._stderr_log = bytearray()
        self._next_id = 0
        self._send_code = False
        self._zygote: Optional[ExitZygote] = None
        self.exit_zygote = exit_zygote

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> IsolatedExecutor:
        self.start()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stderr(self) -> str:
        """The end of everything the workers wrote to stderr."""
        return _tail(self._stderr_log, STDERR_LIMIT)

    def start(self) -> None:
        """Start the worker unless it runs; ``ImplementationError`` when it cannot."""
        if self.alive:
            return
        if self._proc is not None:
            self._stop()
        self._spawn()

    def close(self) -> None:
        """Ask the worker to exit, then make sure it (and anything it forked) is gone."""
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._write(frame(json.dumps({"op": "exit"}).encode()),
                            time.monotonic() + 1.0)
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=1.0)
            except (_Timeout, _WorkerGone, OSError, subprocess.TimeoutExpired):
                pass
        self._stop()

    def _python_path(self) -> str:
        python = self.python
        if os.sep in python or (os.altsep and os.altsep in python):
            if not os.path.exists(python):
                raise ImplementationError(f"python interpreter not found: {python}")
            return python
        found = shutil.which(python)
        if found is None:
            raise ImplementationError(f"python interpreter not found: {python}")
        return found

    def _where(self) -> str:
        return "" if self.python == sys.executable else f" (under {self.python})"

    def _spawn(self) -> None:
        python = self._python_path()
        cmd = [python, str(ENTRY_PATH), "worker", "--impl", self.impl_spec]
        if not self.fork:
            cmd.append("--no-fork")
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: killed as a whole
                preexec_fn=lifetime.child_setup(),  # and killed when greenfuzz ends
            )
        except FileNotFoundError:
            raise ImplementationError(f"python interpreter not found: {self.python}") from None
        except PermissionError:
            raise ImplementationError(
                f"python interpreter is not executable: {self.python}") from None
        except OSError as e:
            raise ImplementationError(
                f"cannot run python interpreter {self.python}: {e.strerror or e}") from None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self.starts += 1
        os.set_blocking(proc.stdin.fileno(), False)
        self._poller = select.poll()
        self._poller.register(proc.stdout.fileno(), select.POLLIN)
        self._poller.register(proc.stderr.fileno(), select.POLLIN)
        self._err_open = True
        self._out = bytearray()
        self._request_err = bytearray()
        try:
            hello = json.loads(self._readframe(time.monotonic() + self.startup_timeout))
        except _Timeout:
            self._stop()
            raise ImplementationError(
                f"the worker for {self.impl_spec!r}{self._where()} did not start within "
                f"{self.startup_timeout:g} s") from None
        except (_WorkerGone, ValueError):
            code = self._stop()
            last = [line for line in self._request_err.decode("utf-8", "replace").splitlines()
                    if line.strip()]
            why = f": {last[-1].strip()}" if last else ""
            raise ImplementationError(
                f"cannot start a worker with {self.python}: exit status {code}{why}") from None
        if not isinstance(hello, dict) or not hello.get("ok"):
            self._stop()
            error = hello.get("error") if isinstance(hello, dict) else None
            message = " ".join(str(error or f"bad hello from the worker: {hello!r}").split())
            raise ImplementationError(message + self._where())
        if hello.get("protocol") != PROTOCOL:
            self._stop()
            raise ImplementationError(
                f"worker protocol {hello.get('protocol')!r} is not {PROTOCOL!r}{self._where()}")
        self.info = hello
        self._send_code = (hello.get("cache_tag") == sys.implementation.cache_tag
                           and hello.get("magic") == importlib.util.MAGIC_NUMBER.hex())

    def _stop(self) -> Optional[int]:
        """Kill the worker's process group, reap it, keep its last stderr; its status."""
        proc = self._proc
        if proc is None:
            return None
        self._proc = None
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker is not reaped yet: pgid valid
        with suppress(subprocess.TimeoutExpired):  # only in uninterruptible sleep
            proc.wait(timeout=5.0)
        self._drain_stderr(proc, time.monotonic() + 0.5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        self._poller = None
        return proc.returncode

    def _drain_stderr(self, proc: subprocess.Popen, deadline: float) -> None:
        if not self._err_open or proc.stderr is None:
            return
        fd = proc.stderr.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._err_open = False
                return
            self._keep_err(chunk)

    def _keep_err(self, chunk: bytes) -> None:
        self._request_err += chunk
        self._stderr_log += chunk
        if len(self._stderr_log) > STDERR_LIMIT:
            del self._stderr_log[:-STDERR_LIMIT]
        if len(self._request_err) > 4 * DETAIL_LIMIT:
            del self._request_err[:-DETAIL_LIMIT]

    # -- I/O with deadlines -------------------------------------------------------------

    def _pump(self, deadline: float) -> None:
        """Wait until the worker writes something (stdout or stderr) and take it in."""
        proc, poller = self._proc, self._poller
        assert proc is not None and poller is not None
        assert proc.stdout is not None and proc.stderr is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        for fd, _ in poller.poll(max(1, int(remaining * 1000 + 0.999))):
            chunk = os.read(fd, 1 << 16)
            if fd == out_fd:
                if not chunk:
                    raise _WorkerGone
                self._out += chunk
            elif fd == err_fd:
                if chunk:
                    self._keep_err(chunk)
                else:
                    poller.unregister(err_fd)
                    self._err_open = False

    def _readframe(self, deadline: float) -> bytes:
        while True:
            data = complete_frame(self._out)
            if data is not None:
                del self._out[:HEADER.size + len(data)]
                return data
            self._pump(deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, ConnectionResetError):
                raise _WorkerGone from None
            view = view[n:]
            if view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Timeout
                select.select([], [fd], [], remaining)

    # -- running ------------------------------------------------------------------------

    def run(self, program: Program, timeout: Optional[float] = None, *,
            fresh: bool = False) -> Observation:
        """Run one program; crashes and hangs are observations, never exceptions.
        ``fresh`` runs it in a child that runs nothing else, whatever
        ``programs_per_child`` says (``extra["programs_before"]`` tells when a child
        had run others first).  A program that ends with the interpreter's exit
        (family ``shutdown``) runs in a child of the exit zygote, or a fresh interpreter
        of its own (``at_exit``, ``exit_zygote``)."""
        if at_exit.at_exit(program):
            if self.exit_zygote and self._zygote is None:
                self._zygote = ExitZygote(self.impl_spec, python=self._python_path(),
                                          memory_limit=self.memory_limit)
            return at_exit.run(program, self.impl_spec, python=self._python_path(),
                               timeout=self.timeout if timeout is None else float(timeout),
                               memory_limit=self.memory_limit, zygote=self._zygote)
        return self.run_source(render.program_source(program), timeout, fresh=fresh)

    def _programframe(self, source: str) -> Tuple[str, bytes]:
        """The program as the worker gets it: compiled here when this interpreter's
        bytecode is the worker's (compiling is the dearest part of a run, and the worker
        forks: every page it writes after a fork costs a page fault), else source."""
        if not self._send_code:
            return "source", source.encode()
        return "marshal", marshal.dumps(loader.compiled(source))

    def run_source(self, source: str, timeout: Optional[float] = None, *,
                   fresh: bool = False) -> Observation:
        """Run the source of a rendered ``def program(gl, T)`` (see ``render``)."""
        limit = self.timeout if timeout is None else float(timeout)
        reuse = 1 if fresh else self.programs_per_child
        self.start()
        self._next_id += 1
        request_id = self._next_id
        kind, program = self._programframe(source)
        request = frame(json.dumps({
            "op": "run", "id": request_id, "program": kind, "timeout": limit,
            "memory_limit": self.memory_limit, "reuse": reuse,
        }).encode()) + frame(program)
        self._request_err = bytearray()
        started = time.monotonic()
        # A crash or hang in a reused child is tried again in a fresh one: twice the time;
        # each attempt may take a little longer than the limit to kill a child and reap it.
        attempts = 2 if reuse > 1 else 1
        deadline = started + attempts * (limit + KILL_SLACK) + self.margin
        try:
            try:
                self._write(request, deadline)
            except _WorkerGone:  # it died while idle: once more, with a fresh worker
                self.start()
                self._write(request, deadline)
            header = json.loads(self._readframe(deadline))
            trace_data = self._readframe(deadline)
        except _Timeout:
            self._stop()
            return Observation(
                trace=[], outcome=Outcome.HANG, seconds=time.monotonic() - started,
                detail=f"no answer from the worker after {deadline - started:g} s "
                       f"(time limit {limit:g} s); worker killed" + self._err_detail(),
                extra={"worker": "killed"})
        except _WorkerGone:
            return self._worker_died(started)
        if header.get("id") != request_id:
            self._stop()
            raise WorkerError(f"worker answered request {header.get('id')!r}, "
                              f"not {request_id}")
        outcome = header.get("outcome")
        if outcome == Outcome.ERROR:
            raise WorkerError(f"worker error: {header.get('detail', '')}")
        extra: Dict[str, object] = dict(header.get("extra") or {})
        seconds = float(header.get("seconds") or 0.0)
        if outcome in (Outcome.CRASH, Outcome.HANG):
            return Observation(trace=[], outcome=Outcome(outcome), seconds=seconds, extra=extra,
                               detail=str(header.get("detail", "")) + self._err_detail())
        try:
            trace = codec.decode_trace(json.loads(trace_data))
        except ValueError as e:
            return Observation(trace=[], outcome=Outcome.CRASH, seconds=seconds, extra=extra,
                               detail=f"malformed trace from the worker: {e}"
                                      + self._err_detail())
        if self._request_err:
            extra["worker_stderr"] = _tail(self._request_err, DETAIL_LIMIT)
        return Observation(trace=trace, seconds=seconds, extra=extra)

    def _worker_died(self, started: float) -> Observation:
        code = self._stop()
        seconds = time.monotonic() - started
        extra: Dict[str, object] = {"worker": "died"}
        if code is not None and code < 0:
            extra["signal"] = signal_name(-code)
            extra["signum"] = -code
        else:
            extra["exit"] = code
        what = ending(code)
        where = "" if self.info.get("fork") is False else " (the worker itself, not a child)"
        return Observation(trace=[], outcome=Outcome.CRASH, seconds=seconds, extra=extra,
                           detail=what + where + self._err_detail())

    def _err_detail(self) -> str:
        if not self._request_err:
            return ""
        return "\n[worker stderr]\n" + _tail(self._request_err, DETAIL_LIMIT)
