"""What a rendered program needs at run time: recording, the registry, trace comparison.

This file is pasted verbatim into every standalone reproducer and is what the runner's
child processes import, so it uses only the standard library, runs on CPython 3.9+ and
PyPy, and never imports greenlet itself: the implementation under test is passed in as
``gl``.  Keep it free of ``from __future__`` (it is pasted mid-file) and of annotations
newer than 3.9.
"""

import gc
import sys


class FuzzError(Exception):
    """The programs' own exception type, so that nothing else is mistaken for it."""


class Unbound(Exception):
    """A script named a greenlet the registry does not hold (not spawned yet, or dropped)."""


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
    if isinstance(value, ExcValue):
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


def _is_collection_death(event):
    kind, payload = event[2], event[3]
    return kind == "died" and isinstance(payload, ExcValue) and payload.args is None \
        and payload.type == "GreenletExit"


def first_divergence(expected, observed):
    """Index of the first event that differs, or None when the traces agree.

    One relaxation: when dropping a reference frees several suspended greenlets at
    once, the order in which they receive GreenletExit depends on when the
    implementation's frames let go of their references (a switch() written in Python
    holds its greenlet until the traceback dies), which greenlet does not document.
    Within a run of consecutive predicted collection deaths, any order agrees.
    """
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
        if tuple(expected[i]) != tuple(observed[i]):
            return i
        i += 1
    if len(expected) != len(observed):
        return min(len(expected), len(observed))
    return None


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
        self.main = gl.getcurrent()
        self.labels[id(self.main)] = "main"

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
        if len(self.events) > self.event_limit:
            self.closed = True
            raise RunawayProgram("more than %d events" % self.event_limit)

    def ret(self, who, pc, value):
        self.rec(who, pc, "return", value)
        return value

    # -- the registry ----------------------------------------------------------------

    def spawn(self, name, run, parent=None, subclass=False):
        cls = self.subclass() if subclass else self.gl.greenlet
        if parent is None:
            g = cls(run)
        else:
            g = cls(run, parent)
        self.labels[id(g)] = name
        self.registry[name] = g

    def subclass(self):
        """A subclass of the implementation's greenlet with an extra attribute."""
        if self._subclass is None:
            self._subclass = type("SubGreenlet", (self.gl.greenlet,), {"fuzz_tag": "sub"})
        return self._subclass

    def drop(self, name):
        if name not in self.registry:
            raise Unbound(name)
        del self.registry[name]

    def teardown(self):
        """Drop every greenlet still held, in name order, as the model does."""
        for name in sorted(self.registry):
            if name in self.registry:
                del self.registry[name]
                self.rec("main", -1, "teardown", name)
        self.closed = True


class RunawayProgram(BaseException):
    """The implementation produced far more events than any program can."""


def execute(program, gl, event_limit=100000):
    """Run a rendered ``program(gl, T)`` on implementation ``gl``; return its trace.

    The cyclic collector is off while the program runs, so that greenlets die exactly
    when their reference count says, as the model predicts; exceptions that reach
    ``sys.unraisablehook`` are recorded, since the model predicts none.
    """
    T = Tracer(gl, event_limit)
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


def load_implementation(spec):
    """Import an implementation by module name or from a ``.py`` file path."""
    import importlib
    import importlib.util
    import os

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
