"""What the controller and the worker say to each other, defined once for both sides.

Every message is a frame: a 4-byte big-endian length, then that many bytes (see
``worker.py`` for the messages).  The worker loads this file in the interpreter under
test; the controller (``greenfuzz.harness.execution.executor``) imports it.  Standard
library only, Python 3.9+.
"""

import json
import os
import signal
import struct
import sys
from contextlib import suppress

from .words import TextEnum

PROTOCOL = "greenfuzz-worker/1"
HEADER = struct.Struct(">I")


class Outcome(TextEnum):
    """How a run ended, as the worker reports it and an ``Observation`` records it."""

    COMPLETED = "completed"
    CRASH = "crash"  # the child died: a signal, or an exit before the whole trace
    HANG = "hang"  # no result within the time limit
    ERROR = "error"  # the worker refused the request (a harness bug); never observed


# -- frames ---------------------------------------------------------------------------


def frame(payload):
    """``payload`` (bytes) as one frame."""
    return HEADER.pack(len(payload)) + payload


def complete_frame(buf):
    """The payload of a whole frame at the start of ``buf``, or None."""
    if len(buf) < HEADER.size:
        return None
    (size,) = HEADER.unpack_from(buf)
    if len(buf) < HEADER.size + size:
        return None
    return bytes(buf[HEADER.size:HEADER.size + size])


def read_exact(fd, n):
    """``n`` bytes from ``fd``, or None at end of file."""
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    """The payload of the next frame on a blocking ``fd``, or None at end of file."""
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    return read_exact(fd, size) if size else b""


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send(fd, header, trace=None):
    """One JSON frame; with ``trace`` (bytes), the trace frame after it."""
    data = frame(json.dumps(header).encode())
    write_all(fd, data if trace is None else data + frame(trace))


# -- how a process ended --------------------------------------------------------------


def signal_name(signum):
    """``SIGSEGV`` for 11; ``signal 99`` for a number without a name here."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


def ending(returncode):
    """``killed by SIGSEGV (11)`` for a negative return code (subprocess's way of saying
    a signal), ``exit status N`` otherwise."""
    if returncode is not None and returncode < 0:
        return "killed by %s (%d)" % (signal_name(-returncode), -returncode)
    return "exit status %s" % (returncode,)


def returncode(status):
    """A wait status (``os.waitpid``) as subprocess's return code: -N for signal N."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


def flush_std():
    """Flush stdout and stderr before a fork or ``os._exit`` (whatever state they are in)."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
