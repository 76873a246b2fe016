"""A pre-started interpreter that forks one child per program ending with the exit.

Starting a fresh interpreter per program of family ``shutdown`` costs its start-up,
``site`` and compiling the whole pasted runtime (~100 ms); the zygote pays that once.
Pasted after ``exit_runtime.py`` into the zygote's script (``execution/zygote.py``
writes it): the same ``__main__`` a fresh script has, with the same modules imported
and the implementation NOT imported (the child imports it after registering its last
``atexit`` callback, as a fresh one does).  ``zygote_serve`` returns only in a child:
the script's ``__main__`` block then defines ``program`` and leaves through
``sys.exit(child(...))`` at module level, as the fresh script does, so the child's exit
is the interpreter's normal one (``atexit`` callbacks, thread shutdown, module
teardown).  Standard library only, Python 3.9+; nothing imported that the fresh script
does not import.

Protocol, over the zygote's original stdin/stdout (frames of ``protocol.py``): first a
JSON hello ``{"ok": true, "pid": n}`` (``{"ok": false, "error": ...}`` without fork);
then per request ``{"op": "run", "id": n, "timeout": seconds}`` and a frame with the
program's source (``def program(gl, T)``), answered by ``{"id": n, "status":
returncode or null (killed at the time limit), "seconds": s}`` or ``{"id": n, "error":
"..."}`` for a source that does not compile.
The child's trace, stdout and stderr go to ``trace``, ``out`` and ``err`` in the folder
given on the command line, truncated before each program.
"""

import json
import os
import signal
import sys
import time
from contextlib import suppress

from .protocol import flush_std, read_frame, returncode, send


def zygote_serve(folder):
    """Serve programs until the controller closes the channel (then exit at once); in
    a forked child, return ``(code, trace_path)`` for the caller to run at module level."""
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    trace_path = os.path.join(folder, "trace")
    out_path = os.path.join(folder, "out")
    err_path = os.path.join(folder, "err")
    # SIGCHLD blocked here, so that sigtimedwait wakes when the child ends; the child
    # gets the mask back the zygote started with (a fresh interpreter's).
    waits = hasattr(signal, "sigtimedwait") and hasattr(signal, "pthread_sigmask")
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD]) if waits else None
    if not hasattr(os, "fork"):
        send(proto_out, {"ok": False, "error": "no os.fork on this interpreter"})
        os._exit(2)
    send(proto_out, {"ok": True, "pid": os.getpid()})
    while True:
        data = read_frame(proto_in)
        source = read_frame(proto_in) if data is not None else None
        if source is None:
            os._exit(0)  # nothing of the zygote's own is worth finalizing
        request = json.loads(data.decode())
        try:
            code = compile(source.decode("utf-8"), sys.argv[0], "exec")
        except Exception as e:
            send(proto_out, {"id": request.get("id"),
                             "error": "%s: %s" % (type(e).__name__, e)})
            continue
        os.close(os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        flush_std()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(proto_in)
            os.close(proto_out)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.close(out)
            os.close(err)
            if waits:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            # Ends the child a second after its limit even when nobody is left to kill
            # it (the zygote, and greenfuzz above it, killed by SIGKILL): no program
            # outlives greenfuzz.  Without ctypes, which a fresh interpreter lacks.
            signal.alarm(int(float(request["timeout"])) + 2)
            return code, trace_path
        os.close(out)
        os.close(err)
        del code
        status = wait_child(pid, started + float(request["timeout"]), waits)
        send(proto_out, {"id": request.get("id"), "status": status,
                         "seconds": time.monotonic() - started})


def wait_child(pid, deadline, waits):
    """The child's return code (-N: signal N), or None when it was still running at
    ``deadline`` and was killed."""
    delay = 0.0002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return returncode(status)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        if waits:
            signal.sigtimedwait([signal.SIGCHLD], remaining)
        else:
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.002)
