"""The random shape at scale: a seeded stream of operations over up to millions of
greenlets, performed on the implementation and recorded as events the reference model
checks as they come.

Both sides generate the stream from the seed: ``Stream`` (here, so that the target and
the controller run the same code) hands out the next operation to whichever greenlet
asks for it, so the controller's model, stepping the same greenlets in the same order,
is handed the same operations; the first event that differs is the first divergence.
The stream never looks at the greenlets' states: it keeps only the names the program's
registry holds (a window of the ``live`` most recent spawns; spawning past it drops the
oldest) and an operation budget, so targets fall on live, suspended, unstarted and dead
greenlets alike and memory stays proportional to the live set.

Operations are plain tuples (``SWITCH`` ... ``INSPECT``; the controller turns them into
IR ops).  Events are ``(greenlet, op index, kind, payload)`` as in ordinary programs
(``runtime.py``), except ``alive``: after a drop it lists the greenlets freed since the
previous ``alive`` event, not all that exist (the full list costs the live set at every
drop).  Like ``scale_runtime.py`` this file uses only the standard library, never imports
greenlet itself, and is pasted into reproducers.
"""

import marshal
import os
import struct
import sys
import time
import weakref
import zlib
from functools import partial
from random import Random

SWITCH, THROW, RETURN, RAISE, SPAWN, PARENT, DROP, RECURSE, INSPECT = range(9)
OP_NAMES = ("switch", "throw", "return", "raise", "spawn", "parent", "drop", "recurse",
            "inspect")
#: Exception types the stream raises and throws (``FuzzError`` is defined below).
EXC_TYPES = ("ValueError", "KeyError", "RuntimeError", "FuzzError", "GreenletExit")
THROW_STYLES = ("none", "class", "class_args", "instance")
#: Values passed in switches and returned: each kind a correct implementation passes
#: through unchanged.
VALUES = (0, 1, -7, 42, 10 ** 12, "a", "token", "", None, True, (1, 2), ("x",), (),
          {"k": 1}, (None, (3,)))
#: How a ``RECURSE`` goes down: plain calls, or through C functions calling back.
VIAS = ("call", "map", "sorted", "reduce")
ATTRS = ("dead", "bool", "parent", "gr_frame")

#: Events per batch sent to the controller.
BATCH = 4096


class Stream:
    """The operations of one random run, handed out in execution order.

    ``greenlets`` caps the spawns, ``operations`` the top-level operations, ``live`` the
    names held at once (the oldest is dropped to spawn past it); ``depth`` is the deepest
    recursion (0: none).  ``next(who)`` is the next operation for greenlet ``who``, None
    once the budget is spent (every greenlet then returns, main last).
    """

    def __init__(self, seed, greenlets, operations, live, depth=20, spawn_rate=0.25):
        self.rng = Random(seed)
        self.random = self.rng.random
        self.greenlets = int(greenlets)
        self.budget = int(operations)
        self.live = max(1, min(int(live), self.greenlets))
        self.depth = int(depth)
        self.spawn_rate = spawn_rate
        self.ring = [None] * self.live
        self.filled = 0
        self.spawned = 0
        self.pending = None
        self.done = 0

    @property
    def exhausted(self):
        return self.budget <= 0

    def pick(self):
        """A name the registry holds (or main)."""
        r = self.random()
        if r < 0.08 or not self.filled:
            return "main"
        name = self.ring[int(self.random() * self.filled)]
        return "main" if name is None else name

    def value(self):
        return VALUES[int(self.random() * len(VALUES))]

    def exc(self, who, target):
        """(style, type, args) of a throw from ``who`` at ``target``: never a
        GreenletExit at main, whose script must go on."""
        r = self.random()
        style = THROW_STYLES[int(r * 4)]
        kind = EXC_TYPES[int(self.random() * (4 if target == "main" else 5))]
        if style == "none":
            if target == "main":
                style = "class"
            else:
                return style, "GreenletExit", ()
        if style == "class":
            return style, kind, ()
        return style, kind, (self.value(),) if style == "instance" else (int(r * 1000),)

    def switch(self, target):
        r = self.random()
        if r < 0.3:
            return (SWITCH, target, (), ())
        if r < 0.6:
            return (SWITCH, target, (self.value(),), ())
        if r < 0.75:
            return (SWITCH, target, (self.value(), self.value()), ())
        if r < 0.9:
            return (SWITCH, target, (), (("k", self.value()),))
        return (SWITCH, target, (self.value(),), (("k", self.value()), ("z", 0)))

    def throw(self, who, target):
        style, kind, args = self.exc(who, target)
        return (THROW, target, style, kind, args)

    def next(self, who):
        if self.budget <= 0:
            return None
        self.budget -= 1
        self.done += 1
        if self.pending is not None:
            op, self.pending = self.pending, None
            return op
        r = self.random()
        if r < self.spawn_rate and self.spawned < self.greenlets:
            return self.spawn()
        r = self.random()
        if r < 0.42:
            return self.switch(self.pick())
        if r < 0.58:
            return self.throw(who, self.pick())
        if r < 0.66 and who != "main":
            return (RETURN, self.value())
        if r < 0.71 and who != "main":
            return (RAISE, EXC_TYPES[int(self.random() * 4)], (self.value(),))
        if r < 0.80:
            target = self.pick()
            s = self.random()
            if s < 0.1:
                return (PARENT, target, (None, 5)[int(s * 20)], True)
            return (PARENT, target, self.pick(), False)
        if r < 0.86:
            slot = int(self.random() * self.filled) if self.filled else 0
            name = self.ring[slot] if self.filled else None
            if name is None:
                return (INSPECT, "main", "bool")
            self.ring[slot] = None
            return (DROP, name)
        if r < 0.92 and self.depth:
            s = self.random()
            via = VIAS[int(s * len(VIAS))]
            most = self.depth if via == "call" else max(1, self.depth // 3)
            depth = int(self.random() * (most + 1))
            target = self.pick()
            inner = self.switch(target) if s < 0.6 else self.throw(who, target)
            return (RECURSE, depth, via, int(s * 997), (inner,))
        return (INSPECT, self.pick(), ATTRS[int(self.random() * 4)])

    def spawn(self):
        """Spawn the next greenlet; past the window, first drop the oldest name."""
        k = self.spawned
        slot = k % self.live
        old = self.ring[slot]
        if old is not None:
            self.ring[slot] = None
            self.pending = self.spawn()
            return (DROP, old)
        r = self.random()
        parent = None if r < 0.5 else "main" if r < 0.6 else self.pick()
        name = "g%d" % k
        self.ring[slot] = name
        self.spawned += 1
        if self.filled < self.live:
            self.filled += 1
        return (SPAWN, name, parent)


def stream_of(recipe):
    return Stream(recipe.get("seed", 0), recipe["greenlets"], recipe["operations"],
                  recipe["live"], recipe.get("depth", 0))


# -- the target side ---------------------------------------------------------------------


class FuzzError(Exception):
    """The stream's own exception type."""


def canon(value, gl):
    """A trace value as plain data ``marshal`` carries: an exception becomes
    ``["exc", type label, args]``, anything unexpected ``["repr", text]``."""
    t = type(value)
    if value is None or t is int or t is str or t is bool or t is float:
        return value
    if t is tuple:
        return tuple(canon(v, gl) for v in value)
    if t is dict:
        return {k: canon(v, gl) for k, v in value.items()}
    if isinstance(value, BaseException):
        if t is gl.GreenletExit:
            label = "GreenletExit"
        elif t is getattr(gl, "error", None):
            label = "greenlet.error"
        else:
            label = t.__name__
        return ["exc", label, canon(value.args, gl)]
    try:
        return ["repr", repr(value)]
    except Exception:
        return ["repr", "<unrepresentable %s>" % t.__name__]


class RandomRun:
    """Performs a ``Stream`` on implementation ``gl``; events go to ``sink`` in batches
    (None: unchecked, nothing recorded)."""

    def __init__(self, gl, recipe, sink=None, out=sys.stdout, progress_every=1.0):
        self.gl = gl
        self.recipe = recipe
        self.stream = stream_of(recipe)
        self.sink = sink
        self.out = out
        self.progress_every = progress_every
        self.last_progress = 0.0
        self.events = []
        self.sent = 0
        self.registry = {}
        self.labels = {}
        self.refs = {}
        self.freed = []
        self.live = 0
        self.peak_live = 0
        self.main = gl.getcurrent()
        self.labels[id(self.main)] = "main"
        self.classes = {"ValueError": ValueError, "KeyError": KeyError,
                        "RuntimeError": RuntimeError, "FuzzError": FuzzError,
                        "GreenletExit": gl.GreenletExit}
        self.start = self.body  # one bound method that every greenlet's ``run`` shares
        #: Greenlet methods written in Python (a wrapper, a mutant) put their frames in
        #: the tracebacks of exceptions passing through, whose cycles only the cyclic
        #: collector frees: then it runs (young generations) before each ``alive``
        #: event, as ``runtime.Tracer.check_alive`` does.  greenlet's own need not.
        self.cycles = written_in_python(gl.greenlet)
        if sink is None:
            self.rec = self.ignore

    # -- recording -------------------------------------------------------------------

    def ignore(self, who, pc, kind, payload=None):
        pass

    def rec(self, who, pc, kind, payload=None):
        self.events.append((who, pc, kind, canon(payload, self.gl)))
        if len(self.events) >= BATCH:
            self.flush()

    def flush(self):
        if self.sink is not None and self.events:
            self.sink(self.events)
            self.sent += len(self.events)
        self.events = []

    def emit(self, **record):
        self.out.write(_json(record) + "\n")
        self.out.flush()

    def tick(self):
        now = time.perf_counter()
        if now - self.last_progress >= self.progress_every:
            self.last_progress = now
            self.emit(progress="random", done=self.stream.done,
                      total=self.stream.done + max(0, self.stream.budget), live=self.live,
                      rss=_rss())

    # -- greenlets ---------------------------------------------------------------------

    def label(self, g):
        if g is None:
            return None
        return self.labels.get(id(g), "?")

    def ref(self, name):
        return self.main if name == "main" else self.registry[name]

    def gone(self, ref):
        ident, name = self.refs.pop(ref)
        del self.labels[ident]
        self.freed.append(name)
        self.live -= 1

    def spawn(self, name, parent):
        run = partial(self.start, name)
        g = self.gl.greenlet(run) if parent is None else self.gl.greenlet(run, self.ref(parent))
        self.labels[id(g)] = name
        self.refs[weakref.ref(g, self.gone)] = (id(g), name)
        self.registry[name] = g
        self.live += 1
        if self.live > self.peak_live:
            self.peak_live = self.live

    def check_alive(self):
        if self.cycles:
            import gc
            gc.collect(1)
        freed, self.freed = self.freed, []
        self.rec(self.label(self.gl.getcurrent()), -1, "alive", tuple(sorted(freed)))

    def body(self, name, *args, **kwargs):
        self.rec(name, -1, "start", (args, kwargs))
        try:
            return self.interpret(name)
        except BaseException as e:
            self.rec(name, -1, "died", e)
            raise

    # -- operations --------------------------------------------------------------------

    def interpret(self, who):
        """Perform the stream's operations for ``who`` until it returns or raises."""
        pc = 0
        nxt = self.stream.next
        perform = self.perform
        while True:
            op = nxt(who)
            if op is None:
                self.rec(who, pc, "return", None)
                return None
            if op[0] == RETURN:
                self.rec(who, pc, "return", op[1])
                return op[1]
            if op[0] == RECURSE:
                self.recurse(who, pc, op, 0)
                self.rec(who, pc, "done", None)
                pc += 2
            else:
                perform(who, pc, op)
                pc += 1
            if not pc & 255:
                self.tick()

    def recurse(self, who, pc, op, level):
        """``op[1]`` levels down (through ``op[2]``), then the nested op; canaries are
        checked on every way back."""
        a = zlib.crc32(b"%d" % pc) + level
        b = (op[3] ^ level) * 31 + 7
        try:
            if level < op[1]:
                via = op[2]
                if via == "call":
                    self.recurse(who, pc, op, level + 1)
                elif via == "map":
                    list(map(lambda _: self.recurse(who, pc, op, level + 1), (0,)))
                elif via == "sorted":
                    sorted((0,), key=lambda _: self.recurse(who, pc, op, level + 1) or 0)
                else:
                    import functools
                    functools.reduce(lambda acc, _: self.recurse(who, pc, op, level + 1),
                                     (0,), 0)
            else:
                self.perform(who, pc + 1, op[4][0])
        finally:
            if a != zlib.crc32(b"%d" % pc) + level or b != (op[3] ^ level) * 31 + 7:
                self.rec(who, pc, "stack", ("canary", level))

    def perform(self, who, pc, op):
        kind = op[0]
        try:
            if kind == SWITCH:
                r = self.ref(op[1]).switch(*op[2], **dict(op[3]))
                self.rec(who, pc, "value", r)
            elif kind == THROW:
                # No greenlet in a local: a caught exception's traceback keeps this
                # frame, and so whatever its locals hold, as long as the exception lives.
                style, cls = op[2], self.classes[op[3]]
                if style == "none":
                    r = self.ref(op[1]).throw()
                elif style == "class":
                    r = self.ref(op[1]).throw(cls)
                elif style == "class_args":
                    r = self.ref(op[1]).throw(cls, op[4][0])
                else:
                    r = self.ref(op[1]).throw(cls(*op[4]))
                self.rec(who, pc, "value", r)
            elif kind == SPAWN:
                self.spawn(op[1], op[2])
                self.rec(who, pc, "done", None)
            elif kind == PARENT:
                self.ref(op[1]).parent = op[2] if op[3] else self.ref(op[2])
                self.rec(who, pc, "done", None)
            elif kind == DROP:
                del self.registry[op[1]]
                self.check_alive()
                self.rec(who, pc, "done", None)
            elif kind == INSPECT:
                attr = op[2]
                if attr == "dead":
                    r = self.ref(op[1]).dead
                elif attr == "bool":
                    r = bool(self.ref(op[1]))
                elif attr == "parent":
                    r = self.label(self.ref(op[1]).parent)
                else:
                    r = self.ref(op[1]).gr_frame is None
                self.rec(who, pc, "attr", r)
            elif kind == RAISE:
                raise self.classes[op[1]](*op[2])
            else:
                raise ValueError("unknown operation %r" % (op,))
        except Exception as e:
            if kind == RAISE:
                raise
            self.rec(who, pc, "caught", e)

    # -- the whole run -------------------------------------------------------------------

    def run(self):
        """Main's operations, then the teardown (every name still held, dropped in name
        order), then the last ``alive`` event."""
        import gc

        gc.disable()
        old_hook = getattr(sys, "unraisablehook", None)

        def hook(unraisable):
            self.rec(self.label(self.gl.getcurrent()), -1, "unraisable",
                     unraisable.exc_value)

        if old_hook is not None:
            sys.unraisablehook = hook
        try:
            self.rec("main", -1, "start", ((), {}))
            try:
                self.interpret("main")
            except BaseException as e:
                self.rec("main", -1, "died", e)
            for name in sorted(self.registry):
                del self.registry[name]
                self.rec("main", -1, "teardown", name)
            self.check_alive()
        except Exception as e:
            self.rec("main", -1, "escaped", e)
        finally:
            if old_hook is not None:
                sys.unraisablehook = old_hook
            gc.enable()
        self.flush()


def written_in_python(cls):
    import types
    for klass in getattr(cls, "__mro__", (cls,)):
        for value in vars(klass).values():
            if isinstance(value, (types.FunctionType, property)):
                return True
    return False


def _json(record):
    import json
    return json.dumps(record)


def _rss():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def frame_sink(fd):
    """Batches of events as frames on ``fd``: 4-byte length, then ``marshal`` data."""
    def send(events):
        data = marshal.dumps(events)
        view = memoryview(struct.pack("<I", len(data)) + data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    return send


def read_frames(fd):
    """The batches ``frame_sink`` wrote, until end of file."""
    buffer = b""
    while True:
        while len(buffer) < 4 or len(buffer) < 4 + struct.unpack("<I", buffer[:4])[0]:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            buffer += chunk
        size = struct.unpack("<I", buffer[:4])[0]
        yield marshal.loads(buffer[4:4 + size])
        buffer = buffer[4 + size:]


def run_random(gl, recipe, events_fd=None, out=sys.stdout):
    """Perform ``recipe``'s stream; return the ``done`` record's fields."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    sink = frame_sink(events_fd) if events_fd is not None else None
    run = RandomRun(gl, recipe, sink, out)
    start = time.perf_counter()
    run.run()
    return {"seconds": round(time.perf_counter() - start, 3), "operations": run.stream.done,
            "events": run.sent, "peak_live": run.peak_live,
            "spawned": run.stream.spawned}
