"""greenfuzz worker: runs programs on one implementation, in the *target* interpreter.

Started once per implementation by ``greenfuzz.harness.execution.executor.IsolatedExecutor``::

    python /path/to/harness/target/__main__.py worker --impl SPEC [--no-fork]

It imports the implementation once, then serves requests until its stdin closes.  It must
run on CPython 3.9 to 3.13 and PyPy 3.9 with only the standard library and the
implementation installed, so it imports nothing but its sibling target modules (this
folder, loaded by path as the package ``greenfuzz_target``: see ``__main__.py``).

Protocol (every message is a frame: 4-byte big-endian length, then that many bytes; the
framing, ``PROTOCOL`` and the outcomes are ``protocol.py``'s, shared with the controller):

* worker -> parent, once, first: a JSON hello, ``{"ok": true, "protocol": ..., ...}`` or
  ``{"ok": false, "error": "<one line>"}`` (then the worker exits with status 2);
* parent -> worker: a JSON request ``{"op": "run", "id": n, "program": "source" or
  "marshal", "timeout": seconds, "memory_limit": bytes or null, "reuse": n}`` followed by
  a frame with the program: the UTF-8 source of ``def program(gl, T): ...``, or its
  compiled code, marshalled, when the parent runs the same interpreter (same
  ``cache_tag`` and bytecode ``magic`` as the hello reports); or ``{"op": "exit"}``;
* worker -> parent, per request: a JSON header frame ``{"id": n, "outcome":
  "completed"|"crash"|"hang"|"error", "detail": str, "seconds": float, "extra": {...}}``
  followed by one frame holding the JSON-encoded trace (``codec.encode_trace``; empty
  when there is none).  ``error`` means a bad request (a harness bug), not a finding.

Each program runs in a forked child: the worker compiles the source (once per source
text) unless the parent sent it compiled, forks, and the child runs ``runtime.execute``
under ``RLIMIT_AS``, writes the encoded trace to a pipe as one frame and
``os._exit(0)``s; the worker answers as soon as the frame is whole and reaps the child
afterwards. The child's stdout and stderr (and the faulthandler dump of a fatal signal)
go to a temporary file that the worker reads back. A child still running at the time
limit gets SIGABRT (faulthandler then dumps where it is stuck), then SIGKILL, and is
reported as ``hang``; a child killed by a signal is a ``crash``, one that exits early a
``crash`` with its exit status.  During a run of such requests, ``SPARES`` children
are forked ahead at a time, each waiting for its program: after a fork every page the
worker writes costs a copy-on-write fault, and a burst pays that once for all of them.

``reuse`` n > 1 lets one child run up to n programs in turn (the next ones arrive
marshalled through a pipe), which saves a fork per program at the price of programs no
longer starting from the same state, as in-process; ``extra["programs_before"]`` says
how many it ran first, and a request with ``reuse`` 1 meanwhile gets a fresh child and
leaves the kept one be.  A crash or hang in a child that ran other programs first is run
again in a fresh child, and that is the answer (the first attempt is in
``extra["after_other_programs"]``).

Without fork (``--no-fork``, or where ``os.fork`` does not exist) the program runs in the
worker itself: a crash kills the worker and the parent restarts it; a hang is the
parent's to time out (faulthandler dumps the stack to stderr at the time limit first).

The protocol channel is a private copy of the original stdin/stdout: file descriptors 0
and 1 are pointed at /dev/null and stderr, so nothing the implementation prints can
corrupt it.
"""

import faulthandler
import importlib.util
import json
import marshal
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import suppress

from . import runtime
from .codec import encode_trace
from .loader import OPTIONAL, compiled, load_checked, one_line
from .protocol import (
    PROTOCOL,
    Outcome,
    complete_frame,
    ending,
    flush_std,
    frame,
    read_frame,
    returncode,
    send,
    signal_name,
    write_all,
)

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None

try:
    import select
except ImportError:  # pragma: no cover
    select = None

#: Most bytes of a child's own output kept for a report (the end is kept).
OUTPUT_LIMIT = 64 * 1024
#: Most bytes a child may write to its output file (RLIMIT_FSIZE): then SIGXFSZ.
OUTPUT_FILE_LIMIT = 64 << 20
#: How long a child that got SIGABRT at its time limit may take to dump its stack and die.
ABORT_GRACE = 0.25
#: How long a child that sent its whole trace may take to exit before it is killed.
EXIT_GRACE = 0.5
#: How many fresh children are forked ahead at a time (see ``Worker.fork_spares``).
SPARES = 8


# -- running -------------------------------------------------------------------------------


class Child:
    """A forked child: its pid, pidfd (where there are pidfds) and pipes."""

    __slots__ = ("memory_limit", "pid", "pidfd", "programs", "request_fd", "result_fd")

    def __init__(self, pid, pidfd, request_fd, result_fd, memory_limit):
        self.pid = pid
        self.pidfd = pidfd
        self.request_fd = request_fd  # None for a child that runs one program only
        self.result_fd = result_fd
        self.memory_limit = memory_limit
        self.programs = 0

    def close_pipes(self):
        for fd in (self.request_fd, self.result_fd):
            if fd is not None:
                close_quietly(fd)
        self.request_fd = self.result_fd = None

    def close(self):
        self.close_pipes()
        if self.pidfd is not None:
            close_quietly(self.pidfd)
            self.pidfd = None


class Worker:
    def __init__(self, impl, proto_in, proto_out, use_fork):
        self.impl = impl
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.use_fork = use_fork
        self.output = tempfile.TemporaryFile() if use_fork else None  # noqa: SIM115
        self.pidfd_open = getattr(os, "pidfd_open", None)
        self.child = None  # a child kept for the next program (reuse > 1)
        self.spares = []  # fresh children forked ahead, each waiting for its program
        self.last_reuse = None  # the previous request's: spares are for a run of fresh ones
        self.exiting = []  # (child, since): children done with their programs

    def serve(self):
        try:
            while True:
                data = read_frame(self.proto_in)
                if data is None:
                    return
                request = json.loads(data.decode())
                if request.get("op") == "exit":
                    return
                program = read_frame(self.proto_in)
                if program is None:
                    return
                header, trace = self.handle(request, program)
                header["id"] = request.get("id")
                send(self.proto_out, header, trace)
                if self.use_fork:
                    self.reap_exiting()  # while the parent looks at the answer
        finally:
            self.retire_child()
            self.discard_spares()
            self.reap_exiting(wait=True)

    def handle(self, request, program):
        try:
            if request.get("program") == "marshal":
                code = [None, program]
            else:  # [code, its marshalled form once a running child needs it]
                code = [compiled(program.decode("utf-8")), None]
            timeout = float(request.get("timeout") or 10.0)
            memory_limit = request.get("memory_limit")
            memory_limit = int(memory_limit) if memory_limit else None
            reuse = max(1, int(request.get("reuse") or 1))
        except Exception as e:
            return {"outcome": Outcome.ERROR, "detail": "bad request: %s: %s" % (
                type(e).__name__, one_line(e)), "seconds": 0.0, "extra": {}}, b""
        if not self.use_fork:
            return self.run_here(code, timeout)
        header, payload, fresh = self.run_in_child(code, timeout, memory_limit, reuse)
        if header["outcome"] != Outcome.COMPLETED and not fresh:
            # The child had run other programs first: what does a fresh one do?
            first = {"outcome": header["outcome"], "detail": header["detail"]}
            header, payload, fresh = self.run_in_child(code, timeout, memory_limit, 1)
            header["extra"]["after_other_programs"] = first
        return header, payload

    def execute(self, code):
        trace = runtime.execute(runtime.define_program(code), self.impl)
        return json.dumps(encode_trace(trace)).encode()

    # -- without fork: in this process --------------------------------------------------

    def run_here(self, code, timeout):
        start = time.perf_counter()
        if hasattr(faulthandler, "dump_traceback_later"):
            faulthandler.dump_traceback_later(timeout, exit=False)
        try:
            payload = self.execute(code_object(code))
        except BaseException:  # as a forked child would exit with status 3
            detail = "exit status 3\nchild error: " + traceback.format_exc()
            seconds = time.perf_counter() - start
            return {"outcome": Outcome.CRASH, "detail": detail, "seconds": seconds,
                    "extra": {"exit": 3}}, b""
        finally:
            if hasattr(faulthandler, "cancel_dump_traceback_later"):
                faulthandler.cancel_dump_traceback_later()
            flush_std()
        seconds = time.perf_counter() - start
        return {"outcome": Outcome.COMPLETED, "detail": "", "seconds": seconds,
                "extra": {}}, payload

    # -- with fork ----------------------------------------------------------------------

    def fork_child(self, code, memory_limit, reuse):
        """Fork a child that runs ``code`` (an entry: see ``compile``; None: a spare that
        reads its first program, marshalled, from its request pipe) and, when ``reuse``
        > 1, then the marshalled programs it reads from its request pipe until end of
        file."""
        request_r = request_w = None
        if reuse > 1 or code is None:
            request_r, request_w = os.pipe()
        result_r, result_w = os.pipe()
        flush_std()
        parent = os.getpid()
        find_prctl()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            die_with_parent(parent)
            close_quietly(result_r)
            if request_w is not None:
                close_quietly(request_w)
            # The other children's pipe ends: a copy of a request pipe's write end here
            # would keep that child from ever reading end of file.
            for other in self.spares + [c for c, _ in self.exiting] + [self.child]:
                if other is not None:
                    other.close()
            self.child_main(code, memory_limit, request_r, result_w)
        close_quietly(result_w)
        if request_r is not None:
            close_quietly(request_r)
        pidfd = None
        if self.pidfd_open is not None:
            try:
                pidfd = self.pidfd_open(pid)
            except OSError:
                pidfd = None
        return Child(pid, pidfd, request_w, result_r, memory_limit)

    def child_main(self, code, memory_limit, request_fd, result_fd):  # pragma: no cover
        status = 3
        try:
            close_quietly(self.proto_in)
            close_quietly(self.proto_out)
            out_fd = self.output.fileno()
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            if memory_limit and resource is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_AS)
                if hard != resource.RLIM_INFINITY:
                    memory_limit = min(memory_limit, hard)
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit, hard))
            if resource is not None:  # output that floods the disk ends in SIGXFSZ
                _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                if hard == resource.RLIM_INFINITY or hard > OUTPUT_FILE_LIMIT:
                    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_FILE_LIMIT, hard))
            if code is None:  # a spare: its program comes through the pipe
                data = read_frame(request_fd)
                code = None if data is None else marshal.loads(data)
            else:
                code = code_object(code)
            while code is not None:
                payload = self.execute(code)
                flush_std()
                write_all(result_fd, frame(payload))
                if request_fd is None:
                    break
                data = read_frame(request_fd)  # None: retired by the worker
                code = None if data is None else marshal.loads(data)
            status = 0
        except BaseException:
            try:
                flush_std()
                os.write(2, ("child error: " + traceback.format_exc()).encode("utf-8", "replace"))
            except BaseException:
                pass
        finally:
            os._exit(status)

    def fork_spares(self, memory_limit):
        """Fork ``SPARES`` children in a row, for the next programs.  After a fork every
        page this process writes is copied (a page fault, 5-9 us on a VM); forking in
        a burst pays that once per burst instead of once per program."""
        for _ in range(SPARES):
            self.spares.append(self.fork_child(None, memory_limit, 1))

    def discard_spares(self):
        for spare in self.spares:
            self.retire_child(spare)
        self.spares = []

    def take_spare(self, code, memory_limit):
        """A spare child, given ``code``; None when there is no usable spare."""
        if self.spares and self.spares[0].memory_limit != memory_limit:
            self.discard_spares()
        while self.spares:
            spare = self.spares.pop(0)
            if code[1] is None:
                code[1] = marshal.dumps(code[0])
            try:
                write_all(spare.request_fd, frame(code[1]))
            except OSError:  # it died while it waited (killed from outside): the next
                self.retire_child(spare)
                continue
            close_quietly(spare.request_fd)  # one program only: it then reads end of file
            spare.request_fd = None
            return spare
        return None

    def retire_child(self, child=None):
        """Let a child that is done go (by default the kept one): a child that may run
        more programs reads end of file and exits; it is reaped later."""
        if child is None:
            child, self.child = self.child, None
            if child is None:
                return
        child.close_pipes()
        self.exiting.append((child, time.perf_counter()))

    def run_in_child(self, code, timeout, memory_limit, reuse):
        """(header, trace payload, whether the child was fresh)."""
        self.reap_exiting()
        out_fd = self.output.fileno()
        os.ftruncate(out_fd, 0)
        os.lseek(out_fd, 0, os.SEEK_SET)
        child = None
        if reuse > 1:  # a fresh child for a one-off request leaves the kept one be
            child, self.child = self.child, None
            if child is not None and (reuse <= child.programs
                                      or memory_limit != child.memory_limit):
                self.retire_child(child)
                child = None
        start = time.perf_counter()
        fresh = child is None
        if child is not None:
            if code[1] is None:
                code[1] = marshal.dumps(code[0])
            try:
                write_all(child.request_fd, frame(code[1]))
            except OSError:  # it died while it waited
                self.retire_child(child)
                child, fresh = None, True
        if child is None and reuse == 1:
            child = self.take_spare(code, memory_limit)
        if child is None:
            child = self.fork_child(code, memory_limit, reuse)
        if reuse == 1 and self.last_reuse == 1 and not self.spares:
            # Fork the next programs' children now, while this one runs (on another core,
            # where there is one): a fresh child per program at nearly the cost of none.
            self.fork_spares(memory_limit)
        self.last_reuse = reuse
        child.programs += 1
        deadline = start + timeout
        buf = bytearray()
        status = self.collect(child, buf, deadline)
        seconds = time.perf_counter() - start
        payload = complete_frame(buf)
        extra = {}
        if child.programs > 1:
            extra["programs_before"] = child.programs - 1
        if status == "done" and payload is not None:
            if child.request_fd is not None and child.programs < reuse:
                self.child = child  # for the next program
            else:
                self.retire_child(child)
            output = self.read_output()
            if output:
                extra["output"] = output
            return {"outcome": Outcome.COMPLETED, "detail": "", "seconds": seconds,
                    "extra": extra}, payload, fresh
        if status == "done":  # end of file before the whole trace: it is exiting
            status = self.finish(child, deadline)
        else:
            child.close()
        output = self.read_output()
        if status is None:
            detail = "no result after %g s; killed" % timeout
            if output:
                detail += "\n" + output
            return {"outcome": Outcome.HANG, "detail": detail, "seconds": seconds,
                    "extra": extra}, b"", fresh
        code = returncode(status)
        detail = ending(code)
        if code < 0:
            extra["signal"] = signal_name(-code)
            extra["signum"] = -code
        else:
            extra["exit"] = code
            if code == 0:
                detail += " without a complete trace"
        if output:
            detail += "\n" + output
        return {"outcome": Outcome.CRASH, "detail": detail, "seconds": seconds,
                "extra": extra}, b"", fresh

    def collect(self, child, buf, deadline):
        """Read the child's result frame: "done" once it is whole or at end of file;
        otherwise its wait status after it was killed at ``deadline`` (None)."""
        poller = select.poll()
        fd = child.result_fd
        poller.register(fd, select.POLLIN)
        if child.pidfd is not None:
            poller.register(child.pidfd, select.POLLIN)
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                child.close()
                return self.kill_hung(child.pid)
            events = poller.poll(max(1, int(remaining * 1000 + 0.999)))
            ready = [e_fd for e_fd, _ in events]
            if fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return "done"
                buf += chunk
                if complete_frame(buf) is not None:
                    return "done"
            elif child.pidfd is not None and child.pidfd in ready:
                # The child is gone, but someone else holds its pipe: take what it wrote.
                drain(fd, buf)
                return "done"

    def finish(self, child, deadline):
        """Reap a child that is exiting, waiting until ``deadline``; its wait status, or
        None when it had to be killed."""
        try:
            delay = 0.0001
            while True:
                done, status = os.waitpid(child.pid, os.WNOHANG)
                if done:
                    return status
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return self.kill_hung(child.pid)
                if child.pidfd is not None:
                    select.select([child.pidfd], [], [], remaining)
                else:
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, 0.01)
        finally:
            child.close()

    def reap_exiting(self, wait=False):
        """Reap the children that are done with their programs; kill one that lingers."""
        still = []
        for child, since in self.exiting:
            if not wait:
                done, status = os.waitpid(child.pid, os.WNOHANG)
                if not done and time.perf_counter() < since + EXIT_GRACE:
                    still.append((child, since))
                    continue
            if wait or not done:
                status = self.finish(child, since + EXIT_GRACE)
            child.close()
            if status != 0:
                sys.stderr.write("greenfuzz worker: child %d was done with its programs, "
                                 "then %s\n" % (child.pid, "did not exit; killed"
                                                if status is None
                                                else ending(returncode(status))))
                flush_std()
        self.exiting = still

    def kill_hung(self, pid):
        """SIGABRT (faulthandler dumps the stack), then SIGKILL; reap; return None."""
        with suppress(OSError):
            os.kill(pid, signal.SIGABRT)
        grace = time.perf_counter() + ABORT_GRACE
        while time.perf_counter() < grace:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return None
            time.sleep(0.005)
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None

    def read_output(self):
        fd = self.output.fileno()
        size = os.fstat(fd).st_size
        if not size:
            return ""
        start = max(0, size - OUTPUT_LIMIT)
        data = os.pread(fd, size - start, start)
        text = data.decode("utf-8", "replace")
        if start:
            text = "[... %d bytes of output left out ...]\n%s" % (start, text)
        return text


def code_object(entry):
    """The code object of a ``[code or None, marshalled code or None]`` entry."""
    return entry[0] if entry[0] is not None else marshal.loads(entry[1])


_PRCTL = []


def die_with_parent(parent):
    """In a forked child: be killed when the process that forked it ends, however it
    ends (Linux ``PR_SET_PDEATHSIG``), so that no program outlives the worker, even one
    that the worker's own SIGKILL left behind.  (libc's prctl is looked up once, in the
    worker: see ``fork_child``.)"""
    if _PRCTL and _PRCTL[0] is not None:
        _PRCTL[0](1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the request took effect
            os._exit(1)


def find_prctl():
    """libc's prctl (None off Linux), once per process."""
    if not _PRCTL:
        prctl = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError, ImportError):
                prctl = None
        _PRCTL.append(prctl)
    return _PRCTL[0]


def close_quietly(fd):
    with suppress(OSError):
        os.close(fd)


def drain(fd, buf):
    """Whatever is buffered in a pipe whose writer may still be open elsewhere."""
    while True:
        ready, _, _ = select.select([fd], [], [], 0)
        if not ready:
            return
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buf += chunk


# -- main ----------------------------------------------------------------------------------


def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(description="greenfuzz worker (see the module docstring)")
    parser.add_argument("--impl", required=True, help="implementation module name or .py path")
    parser.add_argument("--no-fork", action="store_true",
                        help="run programs in the worker itself, not in forked children")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A private copy of the protocol channel; fds 0 and 1 then point elsewhere.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # Children are forked while only this thread runs Python code; an implementation that
    # keeps helper threads of its own is its own business.
    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)

    use_fork = hasattr(os, "fork") and select is not None and not args.no_fork
    impl, error = load_checked(args.impl)
    if use_fork:
        runtime.warm()
    flush_std()
    if impl is None:
        send(proto_out, {"ok": False, "error": error})
        return 2
    version = getattr(impl, "__version__", None)
    hello = {
        "ok": True,
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "executable": sys.executable,
        "impl_version": version if isinstance(version, str) else None,
        "impl_file": getattr(impl, "__file__", None),
        "missing_optional": [name for name in OPTIONAL if not hasattr(impl, name)],
        "cache_tag": sys.implementation.cache_tag,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "fork": use_fork,
    }
    send(proto_out, hello)
    try:
        Worker(impl, proto_in, proto_out, use_fork).serve()
    except BrokenPipeError:
        return 0
    return 0

