#!/usr/bin/env python3
"""greenfuzz reproducer: crash found by greenfuzz

Kind: crash
Implementation: greenlet 3.5.6
Python: CPython 3.11.7 (/work/main/.venv/bin/python3)

crash: killed by SIGSEGV (11)

Run: python THIS_FILE  (implementation: GREENFUZZ_IMPL=module-or-path, default 'greenlet').
Exit status 1 while the implementation differs from the expected trace, 0 once it agrees.
"""

# ---- greenfuzz codec (harness/target/codec.py) ----

class ExcValue:
    """An exception as the trace records it: a type label and its args.

    ``args`` None means any args: the model uses it for errors raised by the
    implementation itself, whose messages differ between releases.
    """

    __slots__ = ("args", "type")

    def __init__(self, type, args=()):
        self.type = type
        self.args = args

    def __eq__(self, other):
        return (
            isinstance(other, ExcValue)
            and self.type == other.type
            and (self.args is None or other.args is None or self.args == other.args)
        )

    def __hash__(self):
        return hash(self.type)

    def __repr__(self):
        return "ExcValue(%r, %r)" % (self.type, self.args)

    def to_json(self):
        return {"exc": [self.type, None if self.args is None else encode(self.args)]}


def encode(value):
    """Tagged JSON form of a trace value (tuples, lists and dicts kept apart)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return {"list": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (ExcValue, Opaque)):
        return value.to_json()
    return {"repr": repr(value)}


def decode(data):
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    ((tag, body),) = data.items()
    if tag == "tuple":
        return tuple(decode(v) for v in body)
    if tag == "list":
        return [decode(v) for v in body]
    if tag == "dict":
        return {decode(k): decode(v) for k, v in body}
    if tag == "exc":
        return ExcValue(body[0], None if body[1] is None else decode(body[1]))
    if tag == "repr":
        return Opaque(body)
    raise ValueError("unknown value tag %r" % (tag,))


class Opaque:
    """A value the trace could not represent (kept as its repr; never equal to a prediction)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Opaque) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return "Opaque(%r)" % (self.text,)

    def to_json(self):
        return {"repr": self.text}


def encode_trace(trace):
    return [[who, pc, kind, encode(payload)] for who, pc, kind, payload in trace]


def decode_trace(data):
    return [(who, pc, kind, decode(payload)) for who, pc, kind, payload in data]


# ---- greenfuzz tracediff (harness/target/tracediff.py) ----

def _is_collection_death(event):
    kind, payload = event[2], event[3]
    return kind == "died" and isinstance(payload, ExcValue) and payload.args is None \
        and payload.type == "GreenletExit"


def _same(want, got):
    """Events agree; an ``alive`` event of None (the implementation's greenlets cannot
    be weakly referenced) agrees with any prediction."""
    if tuple(want) == tuple(got):
        return True
    return want[2] == got[2] == "alive" and got[3] is None and want[:2] == got[:2]


def first_divergence(expected, observed):
    """Index of the first event that differs, or None when the traces agree.

    One relaxation: when dropping a reference frees several suspended greenlets at
    once, the order in which they receive GreenletExit depends on when the
    implementation's frames let go of their references (a switch() written in Python
    holds its greenlet until the traceback dies), which greenlet does not document.
    Within a run of consecutive predicted collection deaths, any order agrees.

    An ``undecided`` event in ``expected`` ends the comparison there: the program reached
    a state greenlet's documentation gives no outcome for (the model's ``Undecided``), so
    whatever a completed run does afterwards agrees.
    """
    for at, event in enumerate(expected):
        if event[2] == "undecided":
            expected, observed = expected[:at], observed[:at]
            break
    i = 0
    while i < len(expected) and i < len(observed):
        if _is_collection_death(expected[i]):
            j = i
            while j < len(expected) and _is_collection_death(expected[j]):
                j += 1
            window = list(observed[i:j])
            for k in range(i, j):
                match = next((w for w in window if tuple(w) == tuple(expected[k])), None)
                if match is None:
                    return i
                window.remove(match)
            i = j
            continue
        if not _same(expected[i], observed[i]):
            return i
        i += 1
    if len(expected) != len(observed):
        return min(len(expected), len(observed))
    return None


# ---- greenfuzz referrers (harness/target/referrers.py) ----

import gc
import sys


def holders(g, T, limit=6):
    """What refers to greenlet ``g``: one line per referrer (``gc.get_referrers``), with
    the module attribute, greenlet or frame behind a container where one is found, and
    how many references no object ``gc`` tracks accounts for (C code, suspended frames).
    """
    mine = sys._getframe()
    # This frame and check_alive's hold ``g`` as a local; so does getrefcount's argument.
    skip = {id(mine), id(mine.f_back), id(T.weak), id(T.registry)}
    mine = None
    refs = [r for r in gc.get_referrers(g) if id(r) not in skip]
    lines = []
    for r in refs[:limit]:
        lines.append(_describe_referrer(r, g, T, skip | {id(refs)}))
    if len(refs) > limit:
        lines.append("... and %d more referrers" % (len(refs) - limit))
    # getrefcount's own argument, the ``g`` of our caller and this frame's ``g``.
    untracked = sys.getrefcount(g) - 3 - len(refs)
    if untracked > 0:
        lines.append("%d reference(s) from objects gc does not track (C code, a "
                     "suspended frame's stack, a pending switch)" % untracked)
    refs = None
    return tuple(lines)


def _describe_referrer(r, g, T, skip):
    """One referrer of ``g``, with what holds it in turn when that says more."""
    if T.labels.get(id(r)) is not None and hasattr(r, "switch"):
        if getattr(r, "parent", None) is g:
            return "greenlet %s (its parent)" % T.label(r)
        return "greenlet %s" % T.label(r)
    what = type(r).__name__
    if isinstance(r, (list, tuple, set, dict)):
        what = "%s of %d item(s)" % (what, len(r))
        owner = _module_attribute(r, skip)
        if owner:
            what += ", " + owner
    elif type(r).__name__ == "frame":
        what = "frame of %s (%s:%s)" % (r.f_code.co_name, r.f_code.co_filename, r.f_lineno)
    elif type(r).__name__ == "method":
        what = "bound method %s" % getattr(r, "__name__", "?")
    return what


def _module_attribute(container, skip):
    """``module M attribute A`` (or ``class C attribute A``) for a container that a
    module or class holds directly, else ''."""
    for r in gc.get_referrers(container):
        if id(r) in skip or not isinstance(r, dict):
            continue
        for key, value in r.items():
            if value is container:
                for m in list(sys.modules.values()):
                    if getattr(m, "__dict__", None) is r:
                        return "module %s attribute %s" % (m.__name__, key)
                return "dict key %r" % (key,)
    return ""


# ---- greenfuzz stacks (harness/target/stacks.py) ----

import sys

# A ``Recurse`` op's level functions call the next level through one of these.  Each calls
# ``fn(arg)`` exactly once from inside a C function (or directly, for ``call``), returns
# ``(value, problem)`` where ``problem`` describes a wrong C result (None when right), and
# lets exceptions from ``fn`` propagate.  A greenlet that switches away inside ``fn`` is
# suspended with the C function's frames on its stack, which the implementation must save
# and restore intact.


def via_call(fn, arg):
    return fn(arg), None


def via_sorted(fn, arg):
    box = []

    def sorted_key(x):
        if x is None:
            box.append(fn(arg))
            return 10 ** 9
        return x

    out = sorted([3, None, 1], key=sorted_key)
    return box[0], (None if out == [1, 3, None] else "sorted() returned %r" % (out,))


def via_map(fn, arg):
    box = []

    def map_fn(x):
        if x is None:
            box.append(fn(arg))
            return -1
        return 2 * x

    out = list(map(map_fn, [1, None, 3]))
    return box[0], (None if out == [2, -1, 6] else "map() gave %r" % (out,))


def via_reduce(fn, arg):
    import functools

    box = []

    def reduce_fn(acc, x):
        if x is None:
            box.append(fn(arg))
            x = 100
        return acc + x

    out = functools.reduce(reduce_fn, [1, None, 3], 0)
    return box[0], (None if out == 104 else "reduce() gave %r" % (out,))


def via_sort_cmp(fn, arg):
    import functools

    box = []

    def sort_cmp(a, b):
        if not box:
            box.append(fn(arg))
        return (a > b) - (a < b)

    out = [3, 1, 2]
    out.sort(key=functools.cmp_to_key(sort_cmp))
    return box[0], (None if out == [1, 2, 3] else "list.sort() gave %r" % (out,))


_QSORT = []


def _qsort():
    """libc ``qsort`` and its comparator type, or None without ctypes (e.g. some PyPy
    builds, or no C library to load): ``via_qsort`` then calls its comparator itself."""
    if not _QSORT:
        try:
            import ctypes

            libc = ctypes.CDLL(None) if sys.platform != "win32" else ctypes.cdll.msvcrt
            qsort = libc.qsort
            qsort.restype = None
            cmp_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                        ctypes.POINTER(ctypes.c_int))
            _QSORT.append((ctypes, qsort, cmp_type))
        except Exception:
            _QSORT.append(None)
    return _QSORT[0]


def via_qsort(fn, arg):
    """Sort seven ints with libc ``qsort`` whose comparator (a ctypes callback) descends
    on its first call.  Exceptions cannot cross the C frames: the comparator keeps the
    first one, and it is raised again once ``qsort`` has returned."""
    data = [5, 2, 8, 1, 9, 3, 7]
    box = []
    failed = []

    def qsort_cmp(pa, pb):
        if not box and not failed:
            try:
                box.append(fn(arg))
            except BaseException as e:
                failed.append(e)
        a, b = pa[0], pb[0]
        return (a > b) - (a < b)

    lib = _qsort()
    if lib is None:
        out = list(data)
        qsort_cmp([out[0]], [out[1]])
        out.sort()
    else:
        ctypes, qsort, cmp_type = lib
        array = (ctypes.c_int * len(data))(*data)
        callback = cmp_type(qsort_cmp)
        qsort(array, len(data), ctypes.sizeof(ctypes.c_int), callback)
        out = list(array)
        if not box and not failed:
            qsort_cmp([0], [0])  # qsort never called back: descend anyway
    if failed:
        error = failed.pop()
        try:
            raise error
        finally:
            error = None
    return box[0], (None if out == sorted(data) else "qsort() gave %r" % (out,))


VIA = {"call": via_call, "sorted": via_sorted, "map": via_map, "reduce": via_reduce,
       "sort_cmp": via_sort_cmp, "qsort": via_qsort}


# -- frames: what a suspended greenlet's stack holds ---------------------------------------

#: The runtime's own functions that a rendered program's stack can hold (the via helpers
#: and their callbacks), besides the program's ``run_*`` and ``recurse_*`` functions.
VIA_FRAMES = {
    "call": (),
    "sorted": ("sorted_key", "via_sorted"),
    "map": ("map_fn", "via_map"),
    "reduce": ("reduce_fn", "via_reduce"),
    "sort_cmp": ("sort_cmp", "via_sort_cmp"),
    "qsort": ("qsort_cmp", "via_qsort"),
}
_PROGRAM_FRAMES = frozenset(name for names in VIA_FRAMES.values() for name in names)


def frame_names(frame, bottom):
    """The names of the program's functions on the ``f_back`` chain from ``frame``,
    innermost first, down to the function named ``bottom`` (None for no frame).

    Frames of other code (an implementation's own ``switch`` written in Python, its
    bootstrap, the harness) are skipped; the walk stops at ``bottom``, the greenlet's
    ``run_<name>``, or at the end of the chain.
    """
    if frame is None:
        return None
    names = []
    while frame is not None:
        name = frame.f_code.co_name
        if name.startswith(("run_", "recurse_")) or name in _PROGRAM_FRAMES:
            names.append(name)
            if name == bottom:
                break
        frame = frame.f_back
    return tuple(names)


# ---- greenfuzz loader (harness/target/loader.py) ----

import functools
import importlib
import importlib.util
import os
import sys

#: Names every implementation must have; programs cannot run without them.
REQUIRED = ("greenlet", "getcurrent", "GreenletExit", "error")
#: Names some implementations have; checks that need them are skipped without them.
OPTIONAL = ("settrace", "gettrace")


def one_line(text):
    return " ".join(str(text).split())


def load_implementation(spec):
    """Import an implementation by module name or from a ``.py`` file path."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        name = "greenfuzz_impl_" + os.path.splitext(os.path.basename(path))[0]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError("cannot load %s" % path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def api_problem(spec, module):
    """Why ``module`` cannot serve as an implementation (one line), or None."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        return "implementation %r lacks the greenlet API: missing %s" % (
            spec, ", ".join(missing))
    exit_type = module.GreenletExit
    if not (isinstance(exit_type, type) and issubclass(exit_type, BaseException)):
        return "implementation %r: GreenletExit is not an exception" % (spec,)
    return None


def load_checked(spec):
    """(module, None), or (None, a one-line reason) when ``spec`` cannot be imported or
    lacks the API.  An implementation that raises ``SystemExit`` while it is imported
    failed to import; ``KeyboardInterrupt`` still stops the caller."""
    if spec.endswith(".py") and not os.path.exists(spec):
        return None, "implementation file not found: %s" % spec
    try:
        module = load_implementation(spec)
    except ModuleNotFoundError as e:
        return None, "cannot import implementation %r: %s" % (spec, one_line(e))
    except (Exception, SystemExit) as e:  # the module itself failed to import
        return None, "implementation %r failed to import: %s: %s" % (
            spec, type(e).__name__, one_line(e))
    problem = api_problem(spec, module)
    return (None, problem) if problem else (module, None)


@functools.lru_cache(maxsize=256)
def compiled(source):
    """The code of a rendered program's source, compiled once per source text
    (Hypothesis replays the same program several times while it shrinks)."""
    return compile(source, "<greenfuzz program>", "exec")


# ---- greenfuzz errors (harness/target/errors.py) ----

class FuzzError(Exception):
    """The programs' own exception type, so that nothing else is mistaken for it."""


class Unbound(Exception):
    """A script named a greenlet the registry does not hold (not spawned yet, or dropped)."""


class RunawayProgram(BaseException):
    """The implementation produced far more events than any program can."""


# ---- greenfuzz gcmode (harness/target/gcmode.py) ----

import gc
import weakref


#: How deep a ``nested`` garbage chain goes: well past CPython's trashcan limit (50), so
#: that its deallocation is deferred and resumed by the trashcan.
NESTED_DEPTH = 120
#: How many finalizers may make new garbage, per ``garbage`` call (``Collector.act``).
REARM = 200


class Collector:
    """A program's collector state: what its finalizers made and saw, checked against the
    invariants that hold in every order of collection (family ``gc``)."""

    def __init__(self, T):
        self.T = T
        self.violations = []
        self.made = 0
        self.ran = 0
        self.tokens = 0
        self.off = False
        self.weak = set()
        self.classes = {}
        #: How many more times a finalizer makes a new piece of garbage like its own.
        self.rearm = 0
        # Thresholds are CPython's (PyPy's collector has none to set).
        thresholds = getattr(gc, "get_threshold", None)
        self.saved = (gc.isenabled(), thresholds() if thresholds is not None else None)
        # Every generation's count back to zero, wherever the program runs (a worker's
        # child or a reproducer): when collections happen then depends on the program.
        gc.collect()
        if thresholds is not None:
            gc.set_threshold(1, 2, 2)
        gc.enable()

    def violation(self, text):
        if len(self.violations) < 20:
            self.violations.append(text)

    def token(self):
        self.tokens += 1
        return 1000 + self.tokens

    def act(self, kind, action):
        """A finalizer: a greenlet of its own, switched to and back (``action``), with
        every observation checked.  Runs wherever the collector runs it.  While the
        program's budget lasts (``REARM`` per ``garbage`` call) it first makes a new
        piece of garbage like its own, so that some is always waiting for the next
        collection, wherever that happens (a switch's allocations included)."""
        self.ran += 1
        if self.off:
            return
        if self.rearm > 0:
            self.rearm -= 1
            # One piece, whatever the kind: a nested chain would multiply the cost.
            _garbage(self, "weakref" if kind == "weakref" else "del", action)
        gl = self.T.gl
        settrace = getattr(gl, "settrace", None)
        tracer = settrace(None) if settrace is not None else None
        try:
            own_greenlet(gl, action, self.token, self.violation)
        except BaseException as e:
            self.violation("%s escaped a finalizer's %s: %s" % (type(e).__name__, action, e))
        finally:
            if settrace is not None:
                settrace(tracer)

    def weakref_callback(self, action):
        def callback(r):
            self.weak.discard(r)
            self.act("weakref", action)
        return callback

    def finish(self):
        """A full collection (every finalizer made runs), then the collector as it was."""
        self.rearm = 0
        gc.collect()
        gc.collect()
        self.off = True
        if self.ran != self.made:
            self.violation("%d finalizer(s) made, %d ran after a full collection"
                           % (self.made, self.ran))
        enabled, threshold = self.saved
        if threshold is not None:
            gc.set_threshold(*threshold)
        if not enabled:
            gc.disable()
        return tuple(self.violations)


def own_greenlet(gl, action, token, violation):
    """A finalizer's own greenlet, switched to and back as ``action`` says (switch: it
    ends at once; park: it switches back and is switched to again; throw: it switches
    back and is thrown into; kill: it switches back and is dropped), every observation
    checked: what it receives, its locals, ``dead``, ``GreenletExit`` once, and
    ``getcurrent()`` around it.  ``token()`` makes unique values; ``violation(text)``
    records what greenlet's rules exclude.  The plain reproducers of family ``gc``
    paste this function as it is."""
    here = gl.getcurrent()
    if here.dead:
        violation("getcurrent() in a finalizer is dead")
    sent = [token()]
    canary = ("canary", sent[0], sent[0] * 7)
    cell = {"received": [], "exits": 0, "dead": False}

    def finalizer_body(x):
        if cell["dead"]:
            violation("a greenlet reported dead ran again")
        cell["received"].append(x)
        if action == "switch":
            return x + 1
        try:
            y = gl.getcurrent().parent.switch(x + 1)
        except FuzzError as e:
            y = e.args[0]
        except gl.GreenletExit:
            cell["exits"] += 1
            raise
        if cell["dead"]:
            violation("a greenlet reported dead ran again")
        cell["received"].append(y)
        return y

    b = gl.greenlet(finalizer_body, here)
    got = b.switch(sent[0])
    if got != sent[0] + 1:
        violation("a finalizer's greenlet answered %r to %r" % (got, sent[0]))
    if action == "park":
        sent.append(token())
        got = b.switch(sent[-1])
    elif action == "throw":
        sent.append(token())
        got = b.throw(FuzzError(sent[-1]))
    elif action == "kill":
        b = None  # its only reference: GreenletExit, exactly once (greenlet_gc)
        if cell["exits"] != 1:
            violation("a dropped greenlet got GreenletExit %d time(s)" % cell["exits"])
    if action in ("park", "throw") and got != sent[-1]:
        violation("a finalizer's greenlet returned %r for %r" % (got, sent[-1]))
    if b is not None:
        if not b.dead:
            violation("a finalizer's greenlet that returned is not dead")
        cell["dead"] = True
        # Switching to a dead greenlet goes to its parent, the current greenlet:
        # the arguments come straight back (switching docs).
        again = token()
        got = b.switch(again)
        if got != again:
            violation("switching to a dead greenlet returned %r for %r" % (got, again))
        b = None
    if action != "kill" and cell["exits"]:
        violation("GreenletExit reached a greenlet that was not dropped")
    if cell["received"] != sent:
        violation("a finalizer's greenlet received %r, was sent %r"
                  % (cell["received"], sent))
    if canary != ("canary", sent[0], sent[0] * 7):
        violation("a finalizer's locals changed across its switches")
    if gl.getcurrent() is not here:
        violation("getcurrent() changed across a finalizer's switches")


class _Cycle:
    """An object in a reference cycle (with itself); finalizer per subclass."""

    def __init__(self):
        self.me = self


def _finalized_class(collector, action):
    """A class whose ``__del__`` acts (one per program and action, so that instances
    hold nothing but themselves)."""
    cls = collector.classes.get(action)
    if cls is None:
        def __del__(self):
            collector.act("del", action)

        cls = collector.classes[action] = type("Finalized", (_Cycle,), {"__del__": __del__})
    return cls


class _Item:
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()


def garbage(T, kind, action, count, age=0):
    """Make ``count`` pieces of cyclic garbage of ``kind`` whose finalizers ``action``
    (see ``greenfuzz.harness.families.gc``); the collector goes on first.  With
    ``age`` 1 or 2 the garbage is moved to that generation while still held, so that
    it is collected at some later collection of that generation: at whatever
    allocation that happens, a switch's included."""
    collector = T.__dict__.get("collector")
    if collector is None:
        collector = T.collector = Collector(T)
    if collector.off:
        return  # after the report (a finally part run by the teardown's kills)
    collector.rearm = min(collector.rearm + REARM, 3 * REARM)
    held = []
    for _ in range(count):
        held.append(_garbage(collector, kind, action))
    if age:
        gc.collect(age - 1)
    held = None


def _garbage(collector, kind, action):
    """One piece of garbage, returned while still held."""
    if kind == "del":
        collector.made += 1
        return _finalized_class(collector, action)()
    if kind == "weakref":
        node = _Cycle()
        collector.weak.add(weakref.ref(node, collector.weakref_callback(action)))
        collector.made += 1
        return node
    head = _Cycle()
    chain = None
    for _ in range(NESTED_DEPTH):
        chain = [_Item(lambda: collector.act("nested", action)), chain]
    head.chain = chain
    collector.made += NESTED_DEPTH
    return head


def collector_report(T):
    """When main's script ends: the invariants broken (``collector``), and the greenlets
    alive after a full collection (``alive``)."""
    collector = T.__dict__.get("collector")
    violations = collector.finish() if collector is not None else ()
    T.rec("main", -1, "collector", violations)
    T.check_alive()


# ---- greenfuzz side_by_side (harness/target/side_by_side.py) ----

import sys



class Peers:
    """What the threads of one ``Concurrent`` op share: each thread's main greenlet, a
    greenlet each parked for ``Cross``, one each parked for ``CrossDrop`` and where it
    got GreenletExit, and the cross-thread rules broken."""

    def __init__(self, n):
        import threading

        self.n = n
        self.mains = [None] * n
        self.parked = [None] * n
        self.victims = [None] * n
        self.idents = [None] * n
        self.exits = [[] for _ in range(n)]
        self.violations = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(n)

    def violation(self, text):
        with self.lock:
            if len(self.violations) < 20:
                self.violations.append(text)


def _parked(gl, exits=None):
    """A greenlet of this thread, started and parked (switched back to its parent); with
    ``exits``, it records the thread it gets GreenletExit in."""
    import threading

    def parked_run():
        try:
            gl.getcurrent().parent.switch()
        except gl.GreenletExit:
            if exits is not None:
                exits.append(threading.get_ident())
            raise

    g = gl.greenlet(parked_run)
    g.switch()
    return g


def concurrent(T, programs, timeout=10.0):
    """Run thread program ``k`` (a rendered ``program(gl, T)``) in thread ``k``, all
    started together, under a tiny switch interval; append each thread's trace (names
    ``<name>@<k>``) and return the cross-thread rules broken."""
    import threading

    gl = T.gl
    n = len(programs)
    peers = Peers(n)
    traces = [None] * n

    def body(k):
        sub = None
        try:
            peers.idents[k] = threading.get_ident()
            sub = T.thread_tracer()
            sub.peers, sub.thread_index = peers, k
            peers.mains[k] = sub.main
            peers.parked[k] = _parked(gl)
            peers.victims[k] = _parked(gl, peers.exits[k])
        except Exception as e:
            peers.violation("thread %d: %s parking its greenlets: %s" % (k, type(e).__name__, e))
            sub = None
        try:
            peers.barrier.wait(timeout)
        except threading.BrokenBarrierError:
            peers.violation("thread %d: the threads did not all start" % k)
        if sub is None:
            return
        try:
            if gl.getcurrent() is not peers.mains[k]:
                peers.violation("thread %d: getcurrent() is not its main greenlet" % k)
            programs[k](gl, sub)
            sub.teardown()
            if gl.getcurrent() is not peers.mains[k]:
                peers.violation("thread %d: getcurrent() is not its main greenlet after "
                                "its program" % k)
        except (Exception, RunawayProgram) as e:
            sub.closed = False
            sub.rec("main", -1, "escaped", e)
        traces[k] = sub.events

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=body, args=(k,), name="greenfuzz-concurrent-%d" % k,
                                daemon=True) for k in range(n)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
    finally:
        sys.setswitchinterval(interval)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a concurrent thread did not end within %s s" % timeout)
    T.merge([("%s@%d" % (who, k), pc, kind, payload)
             for k, trace in enumerate(traces) for who, pc, kind, payload in trace or ()])
    # The greenlets of ended threads: freed here, with no GreenletExit (greenlet_gc).
    peers.mains = peers.parked = peers.victims = None
    for k, exits in enumerate(peers.exits):
        if len(exits) > 1:
            peers.violation("thread %d's dropped greenlet got GreenletExit %d times"
                            % (k, len(exits)))
        if any(ident != peers.idents[k] for ident in exits):
            peers.violation("thread %d's dropped greenlet got GreenletExit in another "
                            "thread" % k)
    return tuple(peers.violations)


def cross(T, action, target, offset):
    """``Cross``: switch to (or throw into) a greenlet of another thread."""
    peers = getattr(T, "peers", None)
    if peers is None or offset % peers.n == 0:
        return None
    k = (T.thread_index + offset) % peers.n
    g = (peers.mains if target == "main" else peers.parked)[k]
    if action == "switch":
        return g.switch()
    return g.throw(FuzzError("cross"))


def cross_drop(T, offset):
    """``CrossDrop``: drop the greenlet another thread parked for this (if still there)."""
    peers = getattr(T, "peers", None)
    if peers is None or offset % peers.n == 0:
        return
    k = (T.thread_index + offset) % peers.n
    with peers.lock:
        victim, peers.victims[k] = peers.victims[k], None
    victim = None  # noqa: F841 - the last reference goes here, in this thread


def yield_gil(kind):
    """``Yield``: let other threads run."""
    import os
    import time

    if kind == "sleep":
        time.sleep(0)
    else:
        os.stat(".")


# ---- greenfuzz runtime (harness/target/runtime.py) ----

import gc
import sys
import weakref


#: What the controller imports from here; the codec and the trace comparison live in their
#: own modules and are named here too, for the code that knows them as ``runtime.*``.
__all__ = ["VIA_FRAMES", "ExcValue", "FuzzError", "Opaque", "RunawayProgram", "Tracer",
           "Unbound", "alive_holders", "decode", "decode_trace", "define_program", "encode",
           "encode_trace", "execute", "explain_leak", "first_divergence", "warm"]


class Held:
    """An object a greenlet holds (as an attribute) whose ``__del__`` runs a finalizer."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()


class Tracer:
    """The registry of greenlets a program holds, and the trace it records.

    The registry is the *only* reference the program keeps to a greenlet; ``drop``
    releases it, which is what makes greenlet deliver ``GreenletExit``.
    """

    def __init__(self, gl, event_limit=100000):
        self.gl = gl
        self.events = []
        self.registry = {}
        self.labels = {}
        self.closed = False
        self.event_limit = event_limit
        self._subclass = None
        self._init_subclass = None
        self.main = gl.getcurrent()
        self.labels[id(self.main)] = "main"
        #: Weak references to every greenlet spawned, by name (None: not weakly
        #: referenceable), for the liveness check.
        self.weak = {}
        #: The greenlets whose run has started (a ``start`` event), by name.
        self.started = set()
        #: The program's finalizers (``finalize``): weak references with callbacks, kept
        #: alive here so that their callbacks run.
        self.finalizers = []
        #: Also record what holds a greenlet that outlives the registry (``holders``
        #: events): costly (``gc.get_referrers``), so only when a leak is explained.
        self.explain = False
        #: Drops made while a program's thread ran (``in_thread`` records ``alive`` after).
        self.thread_drops = 0
        #: Greenlets started in a program's thread and kept past it (``orphan``).
        self.orphans = []
        #: How many of those ran their ``finally`` (``orphans_after``).
        self.orphan_exits = 0

    # -- naming ----------------------------------------------------------------------

    def ref(self, name):
        if name == "main":
            return self.main
        try:
            return self.registry[name]
        except KeyError:
            raise Unbound(name) from None

    def label(self, g):
        if g is None:
            return None
        return self.labels.get(id(g), "?")

    def exc_label(self, e):
        t = type(e)
        if t is getattr(self.gl, "GreenletExit", None):
            return "GreenletExit"
        if t is getattr(self.gl, "error", None):
            return "greenlet.error"
        return t.__name__

    def canon(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, tuple):
            return tuple(self.canon(v) for v in value)
        if isinstance(value, list):
            return [self.canon(v) for v in value]
        if isinstance(value, dict):
            return {k: self.canon(v) for k, v in value.items()}
        if isinstance(value, BaseException):
            return ExcValue(self.exc_label(value), self.canon(value.args))
        try:
            return Opaque(repr(value))
        except Exception:
            return Opaque("<unrepresentable %s>" % type(value).__name__)

    # -- recording -------------------------------------------------------------------

    def rec(self, who, pc, kind, payload=None):
        if self.closed:
            return
        self.events.append((who, pc, kind, self.canon(payload)))
        if kind == "start":
            self.started.add(who)
        if len(self.events) > self.event_limit:
            self.closed = True
            raise RunawayProgram("more than %d events" % self.event_limit)

    def merge(self, events):
        """Events another tracer recorded (a thread program's, family concurrent), as
        they are."""
        self.events.extend(events)

    def ret(self, who, pc, value):
        self.rec(who, pc, "return", value)
        return value

    # -- the registry ----------------------------------------------------------------

    def spawn(self, name, run, parent=None, subclass=False, kind="plain"):
        if kind == "method":
            # ``run`` defined on the class (a staticmethod: a bound method would keep
            # the greenlet alive through its own suspended frame, see finalizers below).
            cls = type("RunGreenlet", (self.gl.greenlet,), {"run": staticmethod(run)})
            g = cls() if parent is None else cls(parent=parent)
        elif kind == "init":
            cls = self.init_subclass()
            g = cls(name, run) if parent is None else cls(name, run, parent)
        else:
            cls = self.subclass() if subclass else self.gl.greenlet
            if parent is None:
                g = cls(run)
            else:
                g = cls(run, parent)
        self.labels[id(g)] = name
        self.registry[name] = g
        try:
            self.weak[name] = weakref.ref(g)
        except TypeError:
            self.weak[name] = None

    def subclass(self):
        """A subclass of the implementation's greenlet with an extra attribute."""
        if self._subclass is None:
            self._subclass = type("SubGreenlet", (self.gl.greenlet,), {"fuzz_tag": "sub"})
        return self._subclass

    def drop(self, name):
        if name not in self.registry:
            raise Unbound(name)
        self.thread_drops += 1
        del self.registry[name]
        self.check_alive()

    # -- liveness ----------------------------------------------------------------------

    def alive(self):
        """Names of the spawned greenlets that still exist, sorted; None when the
        implementation's greenlets cannot be weakly referenced (nothing to check)."""
        names = []
        for name, ref in self.weak.items():
            if ref is None:
                return None
            if ref() is not None:
                names.append(name)
        return tuple(sorted(names))

    def check_alive(self):
        """Record which spawned greenlets exist (an ``alive`` event) and, when
        explaining, what holds each one the registry no longer does."""
        try:
            who = self.label(self.gl.getcurrent())
        except Exception:
            who = "?"
        names = self.alive()
        if names and any(name not in self.registry for name in names):
            # A greenlet that only garbage refers to (a reference cycle through a
            # frame of a switch() written in Python, say) is not leaked: the cyclic
            # collector, off while programs run, would free it.  The young
            # generations hold everything the program made, so this is cheap.
            gc.collect(1)
            names = self.alive()
        self.rec(who, -1, "alive", names)
        if self.explain and names:
            for name in names:
                if name not in self.registry:
                    g = self.weak[name]()
                    if g is not None:
                        self.rec(who, -1, "holders", (name, holders(g, self)))
                    g = None

    def teardown(self):
        """Drop every greenlet still held, in name order, as the model does; again while
        any is held (a greenlet that resurrects from its kill, or one spawned meanwhile),
        so that none outlives the program to run its code during a later one."""
        while self.registry:
            for name in sorted(self.registry):
                if name in self.registry:
                    del self.registry[name]
                    self.rec("main", -1, "teardown", name)
        self.check_alive()
        self.closed = True

    # Rendered programs call the helpers below through their Tracer: ``T.via[...]``,
    # ``T.frame_names(...)``, and ``T.in_thread(T, fn)`` for those that take the Tracer
    # (static methods, called with ``T`` explicitly: the rendered code's convention).

    # -- deep stacks and frames ----------------------------------------------

    via = VIA
    frame_names = staticmethod(frame_names)
    # Family gc (gcmode.py) and family concurrent (side_by_side.py): a thread program's
    # tracer knows its peers and its index among them.
    garbage = staticmethod(garbage)
    collector_report = staticmethod(collector_report)
    concurrent = staticmethod(concurrent)
    cross = staticmethod(cross)
    cross_drop = staticmethod(cross_drop)
    yield_gil = staticmethod(yield_gil)
    peers = None
    thread_index = 0

    def thread_tracer(self):
        """A plain tracer for a thread program (family concurrent), whatever subclass
        this one is (the shutdown family's records at exit)."""
        return Tracer(self.gl, self.event_limit)

    @staticmethod
    def handled():
        """The exception being handled (``sys.exc_info()``) and its ``__context__``, or None."""
        e = sys.exc_info()[1]
        return None if e is None else (e, e.__context__)

    # -- contextvars ---------------------------------------------------------

    @staticmethod
    def context_vars():
        """Fresh context variables for one program run (``ir.CONTEXT_VARS``), so that no
        value set by an earlier run in the same thread can be seen."""
        import contextvars

        return {name: contextvars.ContextVar("greenfuzz_" + name) for name in ("a", "b")}

    @staticmethod
    def copy_context():
        import contextvars

        return contextvars.copy_context()

    # -- tracing -------------------------------------------------------------

    @staticmethod
    def tracers_for(T):
        """The program's ``settrace`` callbacks by mode (``ir.TRACE_MODES``): each records
        every ``switch``/``throw`` event, as the greenlet it runs in (the target) sees it;
        the ``raise`` one then raises ``FuzzError('trace')``, but only between
        greenlets the program holds (never into a greenlet being killed by collection,
        whose fate greenlet leaves to ``sys.unraisablehook``); the ``bounce`` one switches
        back from inside the callback, once per program (see
        ``greenfuzz.harness.model.Model.bounce``)."""

        def held(g):
            return T.labels.get(id(g)) == "main" or T.registry.get(T.label(g)) is g

        def greenfuzz_tracer(event, args):
            if event in ("switch", "throw"):
                origin, target = args
                T.rec(T.label(target), -1, "trace", (event, T.label(origin), T.label(target)))

        def greenfuzz_raising_tracer(event, args):
            greenfuzz_tracer(event, args)
            if event in ("switch", "throw") and held(args[0]) and held(args[1]):
                # The exception's traceback keeps this frame: its locals must not keep the
                # two greenlets alive (a greenlet suspended while it is in flight would
                # then never be collected by reference counting).
                del args
                raise FuzzError("trace")

        used = []

        def greenfuzz_bouncing_tracer(event, args):
            # Once per program, on a switch from a suspended greenlet to a started one (both
            # held): switch back to the origin from the target's context.  The target stays
            # suspended in here (its gr_frame), holding (origin, target), until switched to;
            # then the original switch completes (greenlet's fail_switch_three_greenlets2).
            greenfuzz_tracer(event, args)
            if used or event != "switch":
                return
            origin, target = args
            if origin is target or not (held(origin) and held(target)) or origin.dead \
                    or T.label(target) not in T.started:
                return
            used.append(True)
            try:
                origin.switch("bounce")
            except BaseException:
                # Thrown to while suspended here: the exception's traceback keeps this frame,
                # whose locals must not keep the two greenlets alive once the callback ends.
                del args, origin, target
                raise

        return {"record": greenfuzz_tracer, "raise": greenfuzz_raising_tracer, "off": None,
                "bounce": greenfuzz_bouncing_tracer}

    @staticmethod
    def tracer_mode(tracers, tracer):
        """Which of the program's tracers ``tracer`` is (None for none, ``other``)."""
        for mode, fn in tracers.items():
            if fn is not None and fn is tracer:
                return mode
        return None if tracer is None else "other"

    # -- threads -------------------------------------------------------------

    @staticmethod
    def in_thread(T, fn, timeout=10.0):
        """Run ``fn`` in a new thread and wait for it; whether that thread's main greenlet is
        dead once the thread has ended (greenlet >= 2.0 says so).  An exception escaping
        ``fn`` or a thread that does not end is the implementation's doing: it escapes."""
        import threading

        gl = T.gl
        box = []

        def body():
            try:
                # Unnamed ("?"), even where a freed greenlet's id is reused.
                T.labels[id(gl.getcurrent())] = "?"
                fn()
            except BaseException as e:
                box.append(e)
            box.append(gl.getcurrent())

        thread = threading.Thread(target=body, name="greenfuzz-thread", daemon=True)
        T.thread_drops = 0
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("a program's thread did not end within %s s" % timeout)
        if isinstance(box[0], BaseException):
            raise box[0]
        # A suspended greenlet of this thread whose last reference went in the other thread
        # is killed "the next time that thread calls a greenlet API" (greenlet_gc; greenlet's
        # test_dealloc_other_thread): this thread was blocked in join() meanwhile, so
        # calling one now fixes when that happens, before anything else is recorded.
        gl.getcurrent()
        if T.thread_drops:
            T.check_alive()
        # greenlet marks the main greenlet dead as it cleans up the thread's state, which
        # may finish just after join() returns: allow it a moment.
        import time

        deadline = time.monotonic() + 1.0
        while not box[-1].dead and time.monotonic() < deadline:
            time.sleep(0.001)
        return box[-1].dead

    @staticmethod
    def orphan(T):
        """In a program's thread: start a greenlet of that thread that parks, in try/finally,
        and keep it (``T.orphans``) so that it outlives the thread."""
        gl = T.gl

        def orphan_run():
            try:
                gl.getcurrent().parent.switch()
            finally:
                T.orphan_exits += 1

        g = gl.greenlet(orphan_run)
        g.switch()
        T.orphans.append(g)

    @staticmethod
    def orphans_after(T):
        """After ``in_thread`` (which waited for the thread's main greenlet to report dead:
        only then has greenlet torn the thread's greenlets down, before that dropping them
        frees nothing): (how many orphans are dead, how many ran ``finally``, how many
        outlive the runtime's references to them)."""
        orphans, T.orphans = T.orphans, []
        dead = sum(1 for g in orphans if g.dead)
        try:
            refs = [weakref.ref(g) for g in orphans]
        except TypeError:
            refs = None
        orphans = None
        alive = None if refs is None else sum(1 for r in refs if r() is not None)
        exits, T.orphan_exits = T.orphan_exits, 0
        return (dead, exits, alive)

    @staticmethod
    def in_flight(T, e):
        """What a ``Finally`` records: None, or the exception leaving its try part, its
        ``__cause__`` and the program's ``run_*`` functions on its traceback, outermost first
        (recursion levels and an implementation's own frames left out)."""
        if e is None:
            return None
        runs = set("run_" + name for name in T.weak)
        runs.add("run_main")
        names = []
        tb = e.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_name
            if name in runs:
                names.append(name)
            tb = tb.tb_next
        return (e, e.__cause__, tuple(names))

    # -- finalizers and resurrection -----------------------------------------

    def finalize(self, g, kind, fn):
        """Make ``fn()`` run when greenlet ``g`` is freed: as the callback of a weak reference
        to it (``weakref``), or as ``__del__`` of an object stored in its ``__dict__``
        (``held``; one attribute each, in order)."""
        if kind == "weakref":
            self.finalizers.append(weakref.ref(g, lambda _ref: fn()))
        else:
            self.finalizers.append(None)
            setattr(g, "fuzz_held_%d" % len(self.finalizers), Held(fn))

    def init_subclass(self):
        """A greenlet subclass whose ``__init__`` takes a tag first and stores it in an extra
        attribute before calling greenlet's (one class per program run)."""
        cls = self._init_subclass
        if cls is None:
            base = self.gl.greenlet

            class InitGreenlet(base):
                def __init__(self, tag, run, parent=None):
                    self.fuzz_tag = tag
                    if parent is None:
                        super().__init__(run)
                    else:
                        super().__init__(run, parent)

            cls = self._init_subclass = InitGreenlet
        return cls

    def resurrect(self, name):
        """Register the current greenlet (``name``) in the registry again, from its
        ``GreenletExit`` handler; its parent's label (the dropper's, during a kill)."""
        g = self.gl.getcurrent()
        self.registry[name] = g
        parent = g.parent
        g = None
        return self.label(parent)


def execute(program, gl, event_limit=100000, explain=False):
    """Run a rendered ``program(gl, T)`` on implementation ``gl``; return its trace.

    ``explain`` adds ``holders`` events saying what holds each greenlet that outlives
    the program's reference to it (see ``Tracer.check_alive``).

    The cyclic collector is off while the program runs, so that greenlets die exactly
    when their reference count says, as the model predicts; exceptions that reach
    ``sys.unraisablehook`` are recorded, since the model predicts none.
    """
    T = Tracer(gl, event_limit)
    T.explain = explain
    old_hook = getattr(sys, "unraisablehook", None)

    def hook(unraisable):
        try:
            who = T.label(gl.getcurrent())
        except Exception:
            who = "?"
        T.rec(who, -1, "unraisable", unraisable.exc_value)

    was_enabled = gc.isenabled()
    gc.disable()
    if old_hook is not None:
        sys.unraisablehook = hook
    try:
        try:
            program(gl, T)
            T.teardown()
        except (Exception, RunawayProgram) as e:
            # Whatever escapes the program came from the implementation: a finding.
            T.closed = False
            T.rec("main", -1, "escaped", e)
    finally:
        T.closed = True
        if old_hook is not None:
            sys.unraisablehook = old_hook
        if was_enabled:
            gc.enable()
    return T.events


def alive_holders(explained, ordinal):
    """``{name: holder lines}`` recorded after the ``ordinal``-th ``alive`` event of an
    explaining run's trace (``execute(..., explain=True)``)."""
    seen = -1
    found = {}
    for _who, _pc, kind, payload in explained:
        if kind == "alive":
            seen += 1
            if seen > ordinal:
                break
        elif kind == "holders" and seen == ordinal:
            found[payload[0]] = list(payload[1])
    return found


def explain_leak(program, gl, expected, observed, at):
    """Lines saying what holds each greenlet that outlived the model's prediction at
    divergence ``at``; none unless the traces diverge at an ``alive`` event.  Runs the
    program once more, recording ``gc.get_referrers`` (``execute(..., explain=True)``)."""
    if at >= len(expected) or at >= len(observed) or expected[at][2] != "alive" \
            or observed[at][2] != "alive" or not observed[at][3]:
        return []
    kept = sorted(set(observed[at][3]) - set(expected[at][3] or ()))
    ordinal = sum(1 for e in observed[:at] if e[2] == "alive")
    found = alive_holders(execute(program, gl, explain=True), ordinal)
    lines = []
    for name in kept:
        held = found.get(name) or ["nothing gc can see"]
        lines.append("%s is still alive, held by: %s" % (name, "; ".join(held)))
    return lines


def define_program(code):
    """The ``program(gl, T)`` function that a rendered program's compiled code defines."""
    namespace = {"FuzzError": FuzzError, "Unbound": Unbound}
    exec(code, namespace)
    return namespace["program"]


def warm():
    """Import, once, what programs import lazily (contextvars, functools, and ctypes
    with libc's qsort): the worker calls this before it forks, so that each program's
    fresh child does not pay for those imports again (measured: about 25% more programs
    per second).  Not threading: once imported, its after-fork hook runs in every child
    (about 110 page faults, 0.4 ms here), and only the threads family needs it."""
    import contextvars  # noqa: F401
    import functools  # noqa: F401

    _qsort()

# ---- the program ----
def program(gl, T):
    import sys
    ref, rec, ret, spawn, drop, label = T.ref, T.rec, T.ret, T.spawn, T.drop, T.label
    getcurrent, GreenletExit, via = gl.getcurrent, gl.GreenletExit, T.via
    ctx, tracers = T.context_vars(), T.tracers_for(T)

    def run_g1(*args, **kwargs):
        rec('g1', -1, 'start', (args, kwargs))
        try:
            # 0: switch to main()
            try:
                r = ref('main').switch()
            except Unbound as e:
                rec('g1', 0, 'unbound', e.args[0])
            except Exception as e:
                rec('g1', 0, 'caught', e)
            else:
                rec('g1', 0, 'value', r)
            return ret('g1', 1, None)
        except BaseException as e:
            rec('g1', -1, 'died', e)
            raise

    def run_g2(*args, **kwargs):
        rec('g2', -1, 'start', (args, kwargs))
        try:
            return ret('g2', 0, None)
        except BaseException as e:
            rec('g2', -1, 'died', e)
            raise

    def run_main(*args, **kwargs):
        rec('main', -1, 'start', (args, kwargs))
        try:
            # 0: spawn g2
            try:
                r = spawn('g2', run_g2)
            except Unbound as e:
                rec('main', 0, 'unbound', e.args[0])
            else:
                rec('main', 0, 'done', None)
            # 1: spawn g1 (a greenlet subclass) with parent main
            try:
                r = spawn('g1', run_g1, ref('main'), subclass=True)
            except Unbound as e:
                rec('main', 1, 'unbound', e.args[0])
            else:
                rec('main', 1, 'done', None)
            # 2: switch to g1()
            try:
                r = ref('g1').switch()
            except Unbound as e:
                rec('main', 2, 'unbound', e.args[0])
            except Exception as e:
                rec('main', 2, 'caught', e)
            else:
                rec('main', 2, 'value', r)
            # 3: make 1 cyclic garbage (del) whose finalizers switch a greenlet of their own, aged 0; collector on
            try:
                T.garbage(T, 'del', 'switch', 1, 0)
            except Unbound as e:
                rec('main', 3, 'unbound', e.args[0])
            else:
                rec('main', 3, 'done', None)
            # 4: drop the program's reference to g1
            try:
                r = drop('g1')
            except Unbound as e:
                rec('main', 4, 'unbound', e.args[0])
            else:
                rec('main', 4, 'done', None)
            # 5: switch to main()
            try:
                r = ref('main').switch()
            except Unbound as e:
                rec('main', 5, 'unbound', e.args[0])
            except Exception as e:
                rec('main', 5, 'caught', e)
            else:
                rec('main', 5, 'value', r)
            return ret('main', 6, None)
        except BaseException as e:
            rec('main', -1, 'died', e)
            raise

    try:
        run_main()
    except BaseException:
        pass  # recorded as main's 'died' event
    finally:
        T.collector_report(T)

# ---- what a correct greenlet implementation does (greenfuzz's model) ----
EXPECTED = [('main', -1, 'start', ((), {})),
 ('main', 0, 'done', None),
 ('main', 1, 'done', None),
 ('g1', -1, 'start', ((), {})),
 ('main', 2, 'value', ()),
 ('main', 3, 'done', None),
 ('g1', -1, 'died', ExcValue('GreenletExit', None)),
 ('main', -1, 'alive', ('g2',)),
 ('main', 4, 'done', None),
 ('main', 5, 'value', ()),
 ('main', 6, 'return', None),
 ('main', -1, 'collector', ()),
 ('main', -1, 'alive', ('g2',)),
 ('main', -1, 'teardown', 'g2'),
 ('main', -1, 'alive', ())]


def _main():
    import faulthandler
    import os
    faulthandler.enable()  # a crash prints where each thread was
    gl = load_implementation(os.environ.get('GREENFUZZ_IMPL', 'greenlet'))
    observed = execute(program, gl)
    at = first_divergence(EXPECTED, observed)
    if at is None:
        print('OK: the implementation agrees with the expected trace')
        return 0
    print('DIVERGES at event %d (greenlet, op index, kind, value):' % at)
    for i in range(max(0, at - 3), at):
        print('   same     %r' % (EXPECTED[i],))
    print('   expected %r' % (EXPECTED[at] if at < len(EXPECTED) else 'end of trace',))
    print('   observed %r' % (observed[at] if at < len(observed) else 'end of trace',))
    for line in explain_leak(program, gl, EXPECTED, observed, at):
        print('   ' + line)
    return 1


if __name__ == '__main__':
    sys.exit(_main())
