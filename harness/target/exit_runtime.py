"""Programs that end with the interpreter's exit (family ``shutdown``): the child side
and the oracle.

Pasted after ``runtime.py`` into the script such a program runs as (and which is its
reproducer): it uses ``runtime``'s names (``Tracer``, ``encode``...) only inside
functions, and the harness imports it only for the parts that need nothing else
(``parse_output``, ``late_problem``, ``judge``).  Standard library only, Python 3.9+.

The child writes each event as a line to the trace file the moment it is recorded
(``E`` + JSON), so that everything up to a crash at exit survives it; what greenlet
code run during finalization does (after every ``atexit`` callback) is written as a
``late`` line (``L``), judged by the rules greenlet documents for finalization
(``late_problem``), never predicted.
"""

import json
import os
import sys

from .protocol import signal_name

#: What ``stderr`` may not contain: a fatal error is a crash; the others are
#: exceptions CPython raises when C code broke its contract (a ``mismatch``).
FATAL_MARK = "Fatal Python error"
BROKEN_MARKS = ("SystemError", "returned NULL without setting an exception",
                "returned a result with an exception set")


def late_writer(fd):
    """A function writing one finalization observation (``kind``, ``outcome``,
    ``detail``) to ``fd``: it holds ``os.write`` itself, since module globals are
    cleared while the interpreter finalizes."""

    def late(kind, outcome, detail="", _write=os.write, _fd=fd, _str=str):
        try:
            text = _str(detail).replace("\n", " ").replace("\t", " ")
            _write(_fd, ("L\t%s\t%s\t%s\n" % (kind, outcome, text)).encode())
        except BaseException:
            pass

    return late


def probe_current(getcurrent, greenlet_type, late, kind="getcurrent"):
    """Call ``getcurrent()`` and record what it gave: a greenlet, None, or an exception."""
    try:
        g = getcurrent()
    except BaseException as e:
        late(kind, "raised", "%s: %s" % (type(e).__name__, e))
        return None
    if g is None:
        late(kind, "none", "")
    elif isinstance(g, greenlet_type) or callable(getattr(g, "switch", None)):
        # A wrapper implementation may hand out the greenlets of the module it wraps,
        # of another class than its own ``greenlet``: a greenlet is what switches.
        late(kind, "greenlet", "main" if getattr(g, "parent", None) is None else "other")
    else:
        late(kind, "other", type(g).__name__)
    return g


def probe_call(fn, late, kind):
    """Call ``fn()`` and record its value or exception."""
    try:
        r = fn()
    except BaseException as e:
        late(kind, "raised", "%s: %s" % (type(e).__name__, e))
        return None
    late(kind, "value", repr(r))
    return r


def wait_for(done, limit=1.0):
    """Sleep until ``done()`` (a thread has got where it is left), at most ``limit``
    seconds: instead of a fixed sleep, which costs every program its length and may
    still be too short under load."""
    import time

    end = time.monotonic() + limit
    while not done() and time.monotonic() < end:
        time.sleep(0.0002)


def leave(T, kind, count):
    """Leave something behind for the exit (``LEAVE_KINDS`` of the family): threads and
    objects that only the module global ``T.left`` (or a reference cycle) holds."""
    import threading
    import time

    gl, late = T.gl, T.late
    getcurrent, greenlet_type = gl.getcurrent, gl.greenlet
    left = T.left

    def parked(_late=late, _getcurrent=getcurrent, _type=greenlet_type):
        # Suspended for ever; when killed, its finally looks around.
        try:
            _getcurrent().parent.switch()
        finally:
            probe_current(_getcurrent, _type, _late, "finally-getcurrent")

    if kind == "daemon_switching":
        def spin(_sleep=time.sleep, _getcurrent=getcurrent, _greenlet=greenlet_type):
            def inner():
                while True:
                    _sleep(0)
                    _getcurrent().parent.switch()

            def loop():
                g = _greenlet(inner)
                g.switch()
                running.append(g)
                while True:
                    _sleep(0)
                    g.switch()

            _greenlet(loop).switch()

        running = []
        for _ in range(count):
            threading.Thread(target=spin, daemon=True).start()
        wait_for(lambda: len(running) >= count)
    elif kind == "daemon_idle":
        def idle(_sleep=time.sleep, _greenlet=greenlet_type):
            gs = [_greenlet(parked) for _ in range(count)]
            for g in gs:
                g.switch()
            idling.append(gs)
            while True:
                _sleep(0.001)

        idling = []
        threading.Thread(target=idle, daemon=True).start()
        wait_for(lambda: idling)
    elif kind in ("ended_thread", "nondaemon"):
        def work(_sleep=time.sleep, _greenlet=greenlet_type, _monotonic=time.monotonic,
                 _getcurrent=getcurrent):
            gs = [_greenlet(parked) for _ in range(count)]
            for g in gs:
                g.switch()
            left.extend(gs)
            if kind == "nondaemon":
                # Still switching after main's script has ended: shutdown waits for it.
                # Until a millisecond after shutdown began (it marks the main thread
                # ended first), at most 50 ms.
                def bounce():
                    while True:
                        _sleep(0)
                        _getcurrent().parent.switch()

                b = _greenlet(bounce)
                main = threading.main_thread()
                end = _monotonic() + 0.05
                while _monotonic() < end:
                    b.switch()
                    if not main.is_alive():
                        end = min(end, _monotonic() + 0.001)
                left.append(b)

        t = threading.Thread(target=work, daemon=False)
        t.start()
        if kind == "ended_thread":
            t.join(10.0)
    elif kind == "cycle":
        for _ in range(count):
            box = []
            g = greenlet_type(parked)
            box.append(g)
            box.append(box)
            g.box = box
            g.switch()
    elif kind in ("del_cycle", "del_global"):
        for _ in range(count):
            obj = _user(late, getcurrent, greenlet_type)
            if kind == "del_cycle":
                obj.me = obj
            else:
                # A module of its own, whose globals are cleared as modules are torn
                # down (``__main__``'s are not while a suspended greenlet's frame
                # refers to them).
                import types

                module = sys.modules.get("greenfuzz_left")
                if module is None:
                    module = sys.modules["greenfuzz_left"] = types.ModuleType("greenfuzz_left")
                module.__dict__.setdefault("objects", []).append(obj)
    else:
        raise ValueError("unknown leave kind %r" % (kind,))


def _user(late, getcurrent, greenlet_type):
    """An object whose ``__del__`` uses greenlet: ``getcurrent()``, starting a greenlet
    and switching to a suspended one (made now, switched back to by whoever resumes
    it)."""

    def helper(_getcurrent=getcurrent):
        while True:
            _getcurrent().parent.switch("helper")

    suspended = greenlet_type(helper)
    suspended.switch()

    class User:
        def __del__(self, _late=late, _getcurrent=getcurrent, _type=greenlet_type,
                    _helper=suspended):
            here = probe_current(_getcurrent, _type, _late, "del-getcurrent")
            probe_call(lambda: _type(lambda x: x * 2).switch(21), _late, "del-spawn")

            def resume():
                if here is not None:
                    _helper.parent = here
                return _helper.switch()

            probe_call(resume, _late, "del-switch")

    return User()


def make_tracer(base, fd, early):
    """The child's tracer: ``base`` (runtime's ``Tracer``) writing every event to ``fd``
    as it is recorded, with the family's helpers (``at_exit``, ``leave``)."""

    class ExitTracer(base):
        exit_status = 0

        def __init__(self, gl):
            base.__init__(self, gl)
            self.late = late_writer(fd)
            self.left = []

        def rec(self, who, pc, kind, payload=None):
            if self.closed:
                return
            base.rec(self, who, pc, kind, payload)
            self.write(self.events[-1:])

        def merge(self, events):
            base.merge(self, events)
            self.write(events)

        def write(self, events):
            """Each event to the trace file the moment it is recorded."""
            for event in events:
                line = json.dumps([event[0], event[1], event[2],
                                   encode(event[3])])  # noqa: F821
                os.write(fd, ("E\t" + line + "\n").encode())

        def at_exit(self, fn, is_early):
            import atexit

            if is_early:
                early.append(fn)
            else:
                atexit.register(fn)

        def leave(self, kind, count):
            # What is left behind is the harness's, not the program's: a tracer the
            # program installed (family tracing) does not see it being set up.
            settrace = getattr(self.gl, "settrace", None)
            tracer = settrace(None) if settrace is not None else None
            try:
                leave(self, kind, count)
            finally:
                if settrace is not None:
                    settrace(tracer)

    return ExitTracer


def child(program, impl, trace_path):
    """Run ``program`` as this process's program: an ``atexit`` callback registered
    before the implementation is imported (so it runs last) performs the early
    callbacks, then records ``atexit_end`` and which greenlets exist.  Greenlets still
    held are left for finalization; the collector stays off, as while programs run."""
    import atexit
    import gc

    fd = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    early = []
    box = []

    def last_callback():
        T = box[0]
        for fn in reversed(early):
            try:
                fn()
            except BaseException as e:
                # What atexit does with an exception leaving a callback: it goes to
                # sys.unraisablehook ("Exception ignored in atexit callback") and the
                # next callback runs.
                T.rec("main", -1, "unraisable", e)
        T.rec("main", -1, "atexit_end", None)
        T.check_alive()
        T.closed = True

    atexit.register(last_callback)
    gl = load_implementation(impl)  # noqa: F821
    T = make_tracer(Tracer, fd, early)(gl)  # noqa: F821
    box.append(T)
    sys.modules["__main__"].__dict__["GREENFUZZ_T"] = T  # a module global holds it all

    def hook(unraisable):
        if T.closed:
            T.late("unraisable", "raised", type(unraisable.exc_value).__name__)
            return
        try:
            who = T.label(gl.getcurrent())
        except Exception:
            who = "?"
        T.rec(who, -1, "unraisable", unraisable.exc_value)

    gc.disable()
    sys.unraisablehook = hook
    try:
        program(gl, T)
    except (Exception, RunawayProgram) as e:  # noqa: F821
        T.closed = False
        T.rec("main", -1, "escaped", e)
    return T.exit_status


# -- the oracle (used by the harness and by the reproducer's judging parent) -------------

def parse_output(text, decode_trace):
    """The events a child wrote: ``(who, pc, kind, payload)``; late ones as
    ``("late", -1, kind, (outcome, detail))``.  A torn last line (a crash mid-write)
    is left out."""
    events = []
    for line in text.splitlines():
        if line.startswith("E\t"):
            try:
                events.extend(decode_trace([json.loads(line[2:])]))
            except ValueError:
                continue
        elif line.startswith("L\t"):
            parts = line[2:].split("\t", 2)
            if len(parts) == 3:
                events.append(("late", -1, parts[0], (parts[1], parts[2])))
    return events


def late_problem(kind, outcome, detail):
    """Why a finalization observation breaks what greenlet documents, or None.

    greenlet's CHANGES for 3.5.1: once the interpreter is finalizing
    (``Py_IsFinalizing()``), ``greenlet.getcurrent()`` raises ``RuntimeError`` (3.5.0
    returned None); "other greenlet APIs may misbehave" then, so switching and starting
    greenlets may fail in any way but a ``SystemError`` (C code that broke CPython's
    contract).  api docs: ``getcurrent()`` "Returns the current greenlet": never None.
    """
    if outcome == "raised" and detail.startswith("SystemError"):
        return "%s raised %s during finalization" % (kind, detail)
    if kind.endswith("getcurrent"):
        if outcome == "none":
            return ("getcurrent() returned None during finalization (documented: the "
                    "current greenlet, or RuntimeError once finalizing, greenlet 3.5.1)")
        if outcome == "raised" and not detail.startswith("RuntimeError"):
            return ("getcurrent() raised %s during finalization (documented: RuntimeError, "
                    "greenlet 3.5.1)" % detail)
        if outcome == "other":
            return "getcurrent() returned a %s during finalization" % detail
    return None


def judged_events(observed):
    """The events ``judge`` compares with the model: all but the ``late`` ones, which
    ``late_problem`` judges instead (a divergence's index counts in these)."""
    return [e for e in observed if e[0] != "late"]


def judge(expected, observed, status, signum, stderr, want_status, first_divergence):
    """The verdict on a run at exit: None when it agrees, else ``(kind, summary, index,
    signature)``.  In order: death by a signal or a fatal error (``crash``); the events
    up to the end of the ``atexit`` callbacks against the model; finalization
    observations against ``late_problem``; ``SystemError`` and friends on stderr; the
    exit status."""
    if signum:
        name = signal_name(signum)
        return ("crash", "crash at exit: killed by %s" % name, None, "crash:exit:%s" % name)
    if FATAL_MARK in stderr:
        line = next(ln for ln in stderr.splitlines() if FATAL_MARK in ln)
        return ("crash", "crash at exit: %s" % line.strip(), None, "crash:exit:fatal")
    main = judged_events(observed)
    at = first_divergence(list(expected), main)
    if at is not None:
        want = expected[at] if at < len(expected) else "end of trace"
        got = main[at] if at < len(main) else "end of trace (the process ended first)"
        phase = "while atexit callbacks ran" if any(
            e[2] in ("atexit", "atexit_end") for e in main[:at + 1]) else "before the exit"
        kind_of = lambda e: e[2] if isinstance(e, tuple) else "end"  # noqa: E731
        return ("mismatch", "mismatch at event %d (%s)\n  expected %r\n  observed %r"
                % (at, phase, want, got), at,
                "mismatch:exit:%s->%s" % (kind_of(want), kind_of(got)))
    for e in observed:
        if e[0] == "late":
            problem = late_problem(e[2], e[3][0], e[3][1])
            if problem is not None:
                return ("mismatch", "at finalization: " + problem, None,
                        "mismatch:late:%s:%s" % (e[2], e[3][0]))
    for mark in BROKEN_MARKS:
        if mark in stderr:
            line = next(ln for ln in stderr.splitlines() if mark in ln)
            return ("mismatch", "stderr at exit: %s" % line.strip(), None,
                    "mismatch:stderr:%s" % mark.split()[0])
    if status != want_status:
        return ("mismatch", "exit status %s, expected %s" % (status, want_status), None,
                "mismatch:status")
    return None


def run_child(script, impl, python, timeout, memory_limit=None):
    """Run ``script --child`` in a fresh interpreter: ``(output, returncode or None on a
    hang, stderr, seconds)``.  The child has its own session, killed as a whole."""
    import signal
    import subprocess
    import tempfile
    import time

    fd, trace_path = tempfile.mkstemp(prefix="greenfuzz-exit-", suffix=".trace")
    os.close(fd)

    def limits():
        if memory_limit:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    env = dict(os.environ, GREENFUZZ_IMPL=impl, PYTHONFAULTHANDLER="1")
    started = time.monotonic()
    proc = subprocess.Popen([python, script, "--child", trace_path], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=limits)
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        import contextlib

        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    seconds = time.monotonic() - started
    try:
        with open(trace_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    finally:
        os.unlink(trace_path)
    return text, code, (out + err).decode("utf-8", "replace"), seconds


#: The reproducer's exit status for a crash that killed no process: a fatal error
#: printed while the process still exited (another thread ended it first).
FATAL_STATUS = 3


def judge_main(expected, want_status, impl, timeout, attempts=None):
    """The reproducer without arguments: run itself as a child (again, up to
    ``attempts`` times, ``GREENFUZZ_ATTEMPTS``, default 10, while it agrees: crashes at
    exit often depend on timing), judge it, and end as a finding says: killed by the
    same signal for a crash, exit status 1 for a mismatch or a hang, 0 when the
    implementation agrees.  A fatal error whose process still exited (greenlet 3.0.0rc2
    on CPython 3.10: "Fatal Python error: g_initialstub" in a daemon thread while the
    main thread ends the process) is the torn form of a crash that usually aborts, so
    the remaining attempts go on looking for the signal; only when none dies of one does
    the reproducer report the fatal error, with exit status ``FATAL_STATUS``."""
    import signal

    if attempts is None:
        attempts = int(os.environ.get("GREENFUZZ_ATTEMPTS", "10"))
    torn = None  # the first fatal error without a signal: (attempt, verdict, stderr, code)
    for attempt in range(1, max(1, attempts) + 1):
        text, code, stderr, _ = run_child(os.path.abspath(sys.argv[0]), impl,
                                          sys.executable, timeout)
        if code is None:
            print("HANG: the child did not exit within %s s" % timeout)
            return 1
        observed = parse_output(text, decode_trace)  # noqa: F821
        signum = -code if code < 0 else None
        verdict = judge(expected, observed, code if code >= 0 else None, signum, stderr,
                        want_status, first_divergence)  # noqa: F821
        if verdict is not None and verdict[0] == "crash" and not signum \
                and attempt < attempts:
            torn = torn or (attempt, verdict, stderr, code)
            continue
        if verdict is not None:
            print("run %d of at most %d diverged" % (attempt, attempts))
            break
    if verdict is None and torn is not None:
        attempt, verdict, stderr, code = torn
        print("run %d of at most %d diverged" % (attempt, attempts))
    if stderr.strip():
        print("---- the child's output ----")
        print(stderr.rstrip()[-4000:])
        print("----")
    if verdict is None:
        print("OK: the implementation agrees (events, finalization, exit status %s)" % code)
        return 0
    print(verdict[1])
    if verdict[0] == "crash" and signum:
        sys.stdout.flush()
        import faulthandler

        faulthandler.disable()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    if verdict[0] == "crash":
        return FATAL_STATUS
    return 1
