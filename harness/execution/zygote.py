"""The controller's side of the exit zygote (``harness/target/zygote.py``).

A program of family ``shutdown`` used to cost a fresh interpreter each (start-up,
``site``, compiling ~80 KB of pasted runtime: ~100 ms); the zygote is that interpreter
started once, which forks a child per program at the point where a fresh script would
start running it.  The child leaves through the interpreter's normal exit, so what
the program is judged on (``atexit`` callbacks, thread shutdown, module teardown) is
real finalization; ``tests/test_zygote.py`` compares it with a fresh interpreter.
What differs: the children share one hash seed (a new zygote every
``PROGRAMS_PER_ZYGOTE`` programs).  Findings are still
confirmed by their reproducer, a fresh interpreter (``reporting/reproduce.py``).

Anything wrong with the zygote itself (it died, stopped answering, cannot fork) makes
``run`` return None: the caller then runs the program in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from typing import Callable, Optional, Tuple

from greenfuzz.harness.execution import lifetime

try:
    import resource
except ImportError:  # pragma: no cover - not on this platform
    resource = None  # type: ignore[assignment]
from greenfuzz.harness.target import ZYGOTE, paste
from greenfuzz.harness.target.protocol import HEADER, complete_frame, frame

#: How long the zygote may take, past a child's own limit, to answer.
MARGIN = 2.0
#: Programs per zygote: then a new one, with a new hash seed (a fresh interpreter has
#: its own per program; the children of one zygote share it).
PROGRAMS_PER_ZYGOTE = 500
#: Failures in a row (no start, no answer) after which the zygote is not tried again:
#: every program then runs in a fresh interpreter, without paying for a zygote first.
GIVE_UP_AFTER = 3

#: A zygote's folder is named ``greenfuzz-zygote-<pid of its greenfuzz>-<random>``: one
#: left behind by a greenfuzz killed with SIGKILL (which removes nothing) is removed by
#: the next one that starts a zygote (``sweep``).
FOLDER = re.compile(r"greenfuzz-zygote-([0-9]+)-")

#: ``(trace text, return code or None when killed at the limit, stdout + stderr,
#: seconds)``: what ``exit_runtime.run_child`` returns for a fresh interpreter.
ChildRun = Tuple[str, Optional[int], str, float]


def script(impl: str, runtime_path: str) -> str:
    """The zygote's script: the fresh script's runtime (pasted into ``runtime_path``,
    compiled into ``__main__``'s globals, so that the parse of 80 KB of source is freed
    before the first fork: else every child, freeing it at exit, copies its pages), then
    a ``__main__`` block that forks; each child defines ``program`` and exits as the fresh
    script does."""
    return "\n".join([
        "import sys",
        f"with open({runtime_path!r}) as _f:",
        f"    exec(compile(_f.read(), {runtime_path!r}, 'exec'))",
        "del _f",
        "",
        "if __name__ == '__main__':",
        f"    IMPL = os.environ.get('GREENFUZZ_IMPL', {impl!r})",
        "    _code, _trace = zygote_serve(sys.argv[1])",
        "    sys.argv[1:] = ['--child', _trace]",
        "    exec(_code, globals())",
        "    del _code, _trace",
        "    sys.exit(child(program, IMPL, sys.argv[2]))",
        "",
    ])


#: How long a zygote's folder must have been left alone before ``sweep`` removes it: a
#: pid that does not exist here may be a live greenfuzz in another pid namespace that
#: shares the temporary folder, whose zygote writes its files at every program.
SWEEP_AFTER = 600.0


def sweep(folder: Optional[str] = None, idle: float = SWEEP_AFTER) -> int:
    """Remove the zygote folders in ``folder`` (the temporary one) whose greenfuzz has
    ended and whose files are older than ``idle`` seconds; how many were removed."""
    folder = folder or tempfile.gettempdir()
    removed = 0
    now = time.time()
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = FOLDER.match(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False) or \
                    lifetime.running(int(match[1])):
                continue  # not a zygote's, or its greenfuzz runs (or a process took its pid)
            try:
                with os.scandir(entry.path) as files:
                    newest = max([f.stat().st_mtime for f in files],
                                 default=entry.stat().st_mtime)
            except OSError:
                continue
            if now - newest < idle:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += not os.path.exists(entry.path)
    return removed


class ExitZygote:
    """One zygote for implementation ``impl`` under ``python``; children get the
    address-space limit ``memory_limit`` (set on the zygote, inherited)."""

    def __init__(self, impl: str, *, python: str = sys.executable,
                 memory_limit: Optional[int] = 4 << 30, startup_timeout: float = 30.0,
                 programs_per_zygote: int = PROGRAMS_PER_ZYGOTE) -> None:
        self.impl = impl
        self.programs_per_zygote = programs_per_zygote
        #: Failures in a row; at ``GIVE_UP_AFTER`` the zygote is no longer tried.
        self.failures = 0
        self._programs = 0
        self.python = python
        self.memory_limit = memory_limit
        self.startup_timeout = startup_timeout
        #: How many zygotes were started (1 + restarts).
        self.starts = 0
        #: Why the zygote could not be used last (None while it works).
        self.problem: Optional[str] = None
        self._proc: Optional[subprocess.Popen] = None
        self._folder: Optional[str] = None
        self._buf = bytearray()
        self._next_id = 0

    def __enter__(self) -> ExitZygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _start(self) -> bool:
        if self.alive:
            return True
        self.close()
        if not self.starts:
            sweep()
        folder = tempfile.mkdtemp(prefix=f"greenfuzz-zygote-{os.getpid()}-")
        path = os.path.join(folder, "zygote.py")
        runtime_path = os.path.join(folder, "runtime.py")
        with open(runtime_path, "w") as f:
            f.write("# greenfuzz runtime, exit runtime and zygote (harness/target/)\n"
                    + paste(ZYGOTE))
        with open(path, "w") as f:
            f.write(script(self.impl, runtime_path))
        env = dict(os.environ, GREENFUZZ_IMPL=self.impl, PYTHONFAULTHANDLER="1")
        self._folder = folder
        try:
            with open(os.path.join(folder, "stderr"), "wb") as err:
                self._proc = subprocess.Popen(
                    [self.python, path, folder], env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                    preexec_fn=self._setup())
        except OSError as e:
            self.problem = f"cannot start the zygote: {e}"
            self.close()
            return False
        self.starts += 1
        self._programs = 0
        self._buf = bytearray()
        hello = self._answer(time.monotonic() + self.startup_timeout)
        if not hello or not hello.get("ok"):
            self.problem = "the zygote did not start: " + str(
                (hello or {}).get("error") or self._stderr_tail())
            self.close()
            return False
        self.problem = None
        return True

    def _setup(self) -> Callable[[], None]:
        """The zygote's ``preexec_fn``: it dies with greenfuzz, and its children get the
        limits a fresh interpreter gets (``exit_runtime.run_child``: soft and hard)."""
        dies_with_us, limit = lifetime.child_setup(), self.memory_limit

        def setup() -> None:
            dies_with_us()
            if limit and resource is not None:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        return setup

    def _stderr_tail(self) -> str:
        if self._folder is None:
            return ""
        with suppress(OSError), open(os.path.join(self._folder, "stderr"), "rb") as f:
            return " ".join(f.read()[-2000:].decode("utf-8", "replace").split()[-40:])
        return ""

    def _answer(self, deadline: float) -> Optional[dict]:
        """The next JSON frame from the zygote, or None when it ended or missed
        ``deadline``."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            data = complete_frame(self._buf)
            if data is not None:
                del self._buf[:HEADER.size + len(data)]
                try:
                    answer = json.loads(data)
                except ValueError:
                    return None
                return answer if isinstance(answer, dict) else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buf += chunk

    def run(self, source: str, timeout: float) -> Optional[ChildRun]:
        """Run the program ``source`` (``def program(gl, T)``) in a forked child that
        may take ``timeout`` seconds; None when the zygote cannot be used."""
        if self.failures >= GIVE_UP_AFTER:
            return None
        if self._programs >= self.programs_per_zygote:
            self.close()
        if not self._start():
            self.failures += 1
            return None
        assert self._proc is not None and self._proc.stdin is not None
        assert self._folder is not None
        self._next_id += 1
        request = json.dumps({"op": "run", "id": self._next_id, "timeout": timeout})
        try:
            self._proc.stdin.write(frame(request.encode()) + frame(source.encode()))
            self._proc.stdin.flush()
        except OSError:
            self.problem = "the zygote ended: " + self._stderr_tail()
            self.failures += 1
            self.close()
            return None
        answer = self._answer(time.monotonic() + timeout + MARGIN)
        if answer is None or answer.get("id") != self._next_id or "error" in answer:
            why = "no answer" if answer is None else answer.get("error", "a wrong answer")
            self.problem = f"zygote: {why}: {self._stderr_tail()}"
            self.failures += 1
            self.close()
            return None
        self.failures = 0
        self._programs += 1
        status = answer.get("status")
        texts = []
        for name in ("trace", "out", "err"):
            with open(os.path.join(self._folder, name), "rb") as f:
                texts.append(f.read().decode("utf-8", "replace"))
        return (texts[0], None if status is None else int(status), texts[1] + texts[2],
                float(answer.get("seconds") or 0.0))

    def close(self) -> None:
        """End the zygote and any child it still has (one process group), and remove
        its folder."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with suppress(OSError):
                        stream.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
