"""The plain code a reproducer of a program that ends with the interpreter's exit
(family ``shutdown``) writes out: helpers registered with ``plainwriter``, which the
family's plain renderings ask for.  Plain text only; it lives beside the family's module
to keep that module readable.

``exit``: the file runs itself as a child (``--child``: the program, then the exit) and
judges what the child printed as the harness's oracle does
(``target/exit_runtime.judge``): its signal, a fatal error, a failed check, the
``EVENT`` lines of the ``atexit`` callbacks against the model's, the ``LATE`` lines of
code run during finalization against the rules greenlet documents, the exit status.
``leave_*``: what each ``Leave`` kind leaves behind, as ``exit_runtime.leave`` does.
"""

from __future__ import annotations

from greenfuzz.harness.families.plainwriter import define_helper

define_helper("exit", """
def event(text):
    \"\"\"What happens at exit, written at once: a crash there loses nothing written.\"\"\"
    os.write(1, ("EVENT " + text + "\\n").encode())


def late(kind, outcome, detail="", _write=os.write, _str=str):
    \"\"\"What greenlet code run during finalization saw (globals may be gone by then:
    what it uses is bound as defaults).\"\"\"
    try:
        detail = _str(detail).replace("\\n", " ")
        _write(1, ("LATE\\t%s\\t%s\\t%s\\n" % (kind, outcome, detail)).encode())
    except BaseException:
        pass


def late_problem(kind, outcome, detail):
    \"\"\"Why a finalization observation breaks what greenlet documents, or None: once
    the interpreter is finalizing, getcurrent() raises RuntimeError (3.5.1) and never
    returns None; other APIs may fail, but not with SystemError.\"\"\"
    if outcome == "raised" and detail.startswith("SystemError"):
        return f"{kind} raised {detail} during finalization"
    if kind.endswith("getcurrent") and (outcome in ("none", "other") or (
            outcome == "raised" and not detail.startswith("RuntimeError"))):
        return f"getcurrent() gave {outcome} {detail} during finalization ({kind})"
    return None


def child_problem(child, at_exit, want_status):
    \"\"\"What the child (the program, then the exit) did that greenlet does not, or None.\"\"\"
    lines = child.stdout.splitlines()
    if child.returncode < 0:
        return f"the child was killed by signal {-child.returncode} at exit"
    if "Fatal Python error" in child.stderr:
        return "the child: Fatal Python error at exit"
    failed = [line for line in lines if line.startswith("FAIL ")]
    if failed:
        return "the child: " + failed[0][5:]
    events = [line[6:] for line in lines if line.startswith("EVENT ")]
    if events != at_exit:
        return f"at exit: expected {at_exit!r}, observed {events!r}"
    for line in lines:
        if line.startswith("LATE\\t") and line.count("\\t") == 3:
            problem = late_problem(*line.split("\\t")[1:])
            if problem:
                return "at finalization: " + problem
    for mark in ("SystemError", "returned NULL without setting an exception",
                 "returned a result with an exception set"):
        if mark in child.stderr:
            return f"the child's stderr at exit: {mark}"
    if child.returncode != want_status:
        return f"exit status {child.returncode}, expected {want_status}"
    return None


def judge_child(at_exit, want_status):
    \"\"\"Run this file as a child, again while it agrees (GREENFUZZ_ATTEMPTS, default 10:
    what happens at exit may depend on timing); exit 1, or die of the child's signal,
    when it differs.\"\"\"
    torn = None  # a fatal error whose process still exited: look on for the signal
    for _ in range(max(1, int(os.environ.get("GREENFUZZ_ATTEMPTS", "10")))):
        try:
            child = subprocess.run([sys.executable, __file__, "--child"], timeout=30,
                                   capture_output=True, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            print("FAIL the child did not exit within 30 s")
            return 1
        problem = child_problem(child, at_exit, want_status)
        if problem and child.returncode >= 0 and "Fatal Python error" in child.stderr:
            torn = torn or (child, problem)
        elif problem:
            break
    if problem is None and torn is not None:
        child, problem = torn
    print(child.stdout + child.stderr[-4000:], end="")
    if problem is None:
        print("OK: the exit behaves as greenlet documents")
        return 0
    print("FAIL " + problem, flush=True)
    if child.returncode >= 0 and "Fatal Python error" in child.stderr:
        return 3  # a crash (a fatal error) that killed no process
    if child.returncode < 0:
        faulthandler.disable()
        signal.signal(-child.returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -child.returncode)
    return 1


def run_early_callbacks():
    \"\"\"Registered before the implementation is imported, so atexit calls it last: the
    callbacks registered as early, last first, then the end of the callbacks.\"\"\"
    for fn in reversed(early_callbacks):
        try:
            fn()
        except BaseException as e:
            event(f"unraisable {type(e).__name__}")  # what atexit does with it
    event("atexit_end")
""", imports=("atexit", "faulthandler", "gc", "os", "signal", "subprocess", "sys"))

define_helper("parked", """
left = []  # what the program leaves for the exit, held by a module global


def probe_current(kind, getcurrent, late=late):
    \"\"\"getcurrent(), noting what it gave: a greenlet, None, something else, or an error.\"\"\"
    try:
        g = getcurrent()
    except BaseException as e:
        late(kind, "raised", f"{type(e).__name__}: {e}")
        return None
    late(kind, "none" if g is None else "greenlet" if callable(getattr(g, "switch", None))
         else "other", type(g).__name__)
    return g


def parked_greenlets(count, getcurrent, new, probe=probe_current):
    \"\"\"count greenlets, started and suspended for ever; killed, they look around.\"\"\"
    def parked():
        try:
            getcurrent().parent.switch()
        finally:
            probe("finally-getcurrent", getcurrent)

    gs = [new(parked) for _ in range(count)]
    for g in gs:
        g.switch()
    return gs
""", needs=("exit",))

_LEAVE_HELPERS = {
    "daemon_switching": '''
def leave_daemon_switching(count):
    \"\"\"Daemon threads switching between two greenlets for ever, still running at exit.\"\"\"
    sleep, getcurrent, new = time.sleep, greenlet.getcurrent, greenlet.greenlet

    def spin():
        def inner():
            while True:
                sleep(0)
                getcurrent().parent.switch()

        def loop():
            g = new(inner)
            g.switch()
            running.append(g)
            while True:
                sleep(0)
                g.switch()

        new(loop).switch()

    running = []
    for _ in range(count):
        threading.Thread(target=spin, daemon=True).start()
    wait_for(lambda: len(running) >= count)
''',
    "daemon_idle": '''
def leave_daemon_idle(count):
    \"\"\"A daemon thread asleep for ever, with count suspended greenlets.\"\"\"
    def idle(sleep=time.sleep):
        idling.append(parked_greenlets(count, greenlet.getcurrent, greenlet.greenlet))
        while True:
            sleep(0.001)

    idling = []
    threading.Thread(target=idle, daemon=True).start()
    wait_for(lambda: idling)
''',
    "threads": '''
def leave_thread(count, ended):
    \"\"\"A thread that parks count greenlets (kept by a global), then ends at once
    (ended: joined here) or keeps switching after main's script ended (shutdown waits).\"\"\"
    def work(sleep=time.sleep, monotonic=time.monotonic):
        getcurrent, new = greenlet.getcurrent, greenlet.greenlet
        left.extend(parked_greenlets(count, getcurrent, new))
        if not ended:
            def bounce():
                while True:
                    sleep(0)
                    getcurrent().parent.switch()

            b = new(bounce)
            main = threading.main_thread()
            end = monotonic() + 0.05  # until just after shutdown began, at most 50 ms
            while monotonic() < end:
                b.switch()
                if not main.is_alive():
                    end = min(end, monotonic() + 0.001)
            left.append(b)

    thread = threading.Thread(target=work)
    thread.start()
    if ended:
        thread.join(10)
''',
    "cycle": '''
def leave_cycle(count):
    \"\"\"count suspended greenlets held only by reference cycles.\"\"\"
    for g in parked_greenlets(count, greenlet.getcurrent, greenlet.greenlet):
        box = [g]
        box.append(box)
        g.box = box
''',
    "del": '''
class UsesGreenlet:
    \"\"\"Its __del__ calls getcurrent(), starts a greenlet and switches to a suspended one.\"\"\"

    def __init__(self, probe=probe_current, late=late):
        getcurrent, new = greenlet.getcurrent, greenlet.greenlet

        def helper():
            while True:
                getcurrent().parent.switch("helper")

        suspended = new(helper)
        suspended.switch()
        self.tools = (getcurrent, new, suspended, probe, late)

    def __del__(self):
        getcurrent, new, suspended, probe, late = self.tools
        here = probe("del-getcurrent", getcurrent)
        for kind, call in (("del-spawn", lambda: new(lambda x: x * 2).switch(21)),
                           ("del-switch", lambda: suspended.switch())):
            if kind == "del-switch" and here is not None:
                suspended.parent = here
            try:
                late(kind, "value", repr(call()))
            except BaseException as e:
                late(kind, "raised", f"{type(e).__name__}: {e}")


def leave_uses_greenlet(count, cycle):
    \"\"\"Objects whose __del__ uses greenlet, freed at exit: by the collection during
    finalization (cycle: each refers to itself) or as modules are torn down (held by a
    module of their own).\"\"\"
    module = sys.modules.setdefault("greenfuzz_left", types.ModuleType("greenfuzz_left"))
    for _ in range(count):
        obj = UsesGreenlet()
        if cycle:
            obj.me = obj
        else:
            module.__dict__.setdefault("objects", []).append(obj)
''',
}
define_helper("wait_for", """
def wait_for(done, limit=1.0):
    \"\"\"Sleep until done() (a thread got where it is left), at most limit seconds.\"\"\"
    end = time.monotonic() + limit
    while not done() and time.monotonic() < end:
        time.sleep(0.0002)
""", imports=("time",))
for _kind, _text in _LEAVE_HELPERS.items():
    define_helper(f"leave_{_kind}", _text,
                  needs=("parked", "wait_for") if "wait_for(" in _text else ("parked",),
                  imports=("threading", "time") if "thread" in _text else ("sys", "types"))
#: Each ``Leave`` kind: its helper and the call.
LEAVE_CALLS = {"daemon_switching": ("daemon_switching", "leave_daemon_switching({n})"),
                "daemon_idle": ("daemon_idle", "leave_daemon_idle({n})"),
                "ended_thread": ("threads", "leave_thread({n}, ended=True)"),
                "nondaemon": ("threads", "leave_thread({n}, ended=False)"),
                "cycle": ("cycle", "leave_cycle({n})"),
                "del_cycle": ("del", "leave_uses_greenlet({n}, cycle=True)"),
                "del_global": ("del", "leave_uses_greenlet({n}, cycle=False)")}
