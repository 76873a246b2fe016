"""A reference implementation of the greenlet API built on OS threads.

Every greenlet is backed by a daemon ``threading.Thread``; the OS thread that first touches
the API is its own *main* greenlet.  The main greenlet and every greenlet started from it
form a *family*, and control is handed over with one lock per greenlet so that exactly one
member of a family runs at a time.  Because each greenlet really is a separate call stack,
the switching semantics (argument packing, parents, dead-greenlet forwarding, ``throw``,
tracing, ``GreenletExit`` on garbage collection) are correct by construction; the code is
slow and deliberately small.  It needs only the standard library (CPython 3.9 to 3.13).

Documented differences from greenlet 3.x (things threads cannot reproduce):

* ``gr_context``: a started greenlet runs inside its own ``contextvars.Context``, created
  empty when it starts and reported as ``None`` while it is empty (greenlet creates it
  lazily, on first use; so after ``copy_context()`` or resetting every variable greenlet
  reports an empty Context where this reports ``None``).  The main greenlet reports a
  *copy* of its thread's context (a snapshot taken when it last switched away, or a fresh
  copy while it runs), never the live object.  Assigning ``gr_context`` works for
  unstarted and dead greenlets; for a started greenlet that is still alive (including a
  main greenlet) it raises ``NotImplementedError``, because Python cannot swap the context
  of frames that are already running.  ``Context.run`` used inside a greenlet is not
  reflected in ``gr_context``, and a greenlet started with a context that another greenlet
  has entered dies with the ``RuntimeError`` from ``Context.run`` (greenlet shares it).
* ``gr_frame``: the frame that called ``switch``/``throw`` is right, but the bottom of its
  ``f_back`` chain continues into this module's bootstrap frames instead of ending at
  ``run``; tracebacks likewise show this module's frames.
* A greenlet that catches the ``GreenletExit`` sent by garbage collection and switches
  away instead of dying is simply abandoned (its thread stays blocked); greenlet prints
  "GreenletExit did not kill" and resurrects it.  Exceptions escaping such a kill are
  reported through ``sys.unraisablehook``.
* Greenlets of a thread that has exited, and greenlets still suspended at interpreter
  shutdown, are abandoned: their daemon threads stay blocked and nothing is run in them
  (those of an exited thread report dead, as in greenlet).
* When a dying greenlet's result cannot be delivered to any ancestor (an unstarted one was
  re-parented to another thread), greenlet aborts the process; this delivers the ``error``
  to the thread's main greenlet.
* A signal (e.g. ``KeyboardInterrupt``) delivered to the main thread while it waits for
  control back would let two members of a family run at once.
* ``gr_frame``, ``sys.exc_info()`` and the recursion limit are per thread, as in greenlet;
  but ``threading.current_thread()``/``get_ident()`` differ between greenlets.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from types import SimpleNamespace, TracebackType
from typing import Any, Callable, List, Optional, Tuple

__version__ = "0.1-threaded"
__all__ = ["GreenletExit", "error", "getcurrent", "gettrace", "greenlet", "settrace"]


class GreenletExit(BaseException):
    """Kills a greenlet; when it escapes ``run`` it is returned to the parent as a value."""


class error(Exception):  # lower case: the name is greenlet's public API
    """An impossible switch, e.g. into a greenlet that belongs to another thread."""


_KILL_MESSAGE = "Killing the greenlet because all references have vanished."
_MISSING: Any = object()  # "no run attribute", distinct from run=None
_tls = threading.local()  # per OS thread: family, inner (own state), switching, owner
# A message handed to the greenlet that gets control: (kind, a, b, origin) where kind is
# "switch" (a=args, b=kwargs), "throw" (a=exception) or "exit" (a=GreenletExit instance
# turned into a value, delivered as itself and starting an unstarted greenlet with no args).
_Message = Tuple[str, Any, Any, Any]


class _Inner:
    """The state of one greenlet that its backing thread may see.

    The backing thread references only this object, never the ``greenlet`` wrapper, so that
    dropping the last user reference to a suspended greenlet reaches ``greenlet.__del__``.
    """

    __slots__ = ("auto_context", "context", "dead", "family", "frame", "inbox", "is_main",
                 "outcome", "pending_run", "snapshot", "started", "wake")

    def __init__(self, is_main: bool = False) -> None:
        self.is_main = is_main
        self.started = is_main
        self.dead = False
        self.family: Optional[_Family] = None
        self.wake = threading.Lock()  # held while suspended; released to give it control
        self.wake.acquire()
        self.inbox: Optional[_Message] = None
        self.pending_run: Any = None  # the run callable, from the start until it is called
        self.outcome: Optional[Tuple[str, Any, Any]] = None  # how run ended
        self.frame: Any = None  # the user frame that switched away, while suspended
        self.context: Optional[contextvars.Context] = None
        self.auto_context = False  # context was created empty at start, not assigned
        self.snapshot: Optional[contextvars.Context] = None  # main only: copy at switch-out

    def take(self) -> _Message:
        msg, self.inbox = self.inbox, None
        assert msg is not None
        return msg


class _Family:
    """One OS thread's main greenlet and every greenlet started from it.

    Invariant: exactly one member runs, and ``current`` (a strong reference, like greenlet's
    per-thread state) is that member.  ``trace`` is the thread's settrace callback.
    """

    def __init__(self) -> None:
        self.alive = True  # cleared by _ThreadOwner when the OS thread exits
        self.trace: Any = None
        self.deferred: List[greenlet] = []  # dropped elsewhere; to be killed here
        self.lock = threading.RLock()  # guards deferred, which other threads append to
        main = object.__new__(greenlet)
        main._gl_inner = _Inner(is_main=True)
        main._gl_inner.family = self
        main._gl_parent = None
        main._gl_run = _MISSING
        self.main = main
        self.current = main


class _ThreadOwner:
    """Stored in the OS thread's ``threading.local``: finalized when that thread exits."""

    __slots__ = ("family",)

    def __init__(self, family: _Family) -> None:
        self.family = family

    def __del__(self) -> None:
        self.family.alive = False


def _enter() -> _Family:
    """The calling thread's family (created on first use), after running deferred kills."""
    fam: Optional[_Family] = getattr(_tls, "family", None)
    if fam is None:
        fam = _Family()
        _tls.family, _tls.inner, _tls.switching = fam, fam.main._gl_inner, False
        _tls.owner = _ThreadOwner(fam)
    elif fam.deferred and _running_here(fam):
        while fam.deferred:
            with fam.lock:
                g = fam.deferred.pop(0)
            if g._gl_inner.started and not g._gl_inner.dead and g is not fam.current:
                _kill(fam, g)
            del g
    return fam


def _running_here(fam: _Family) -> bool:
    """True if the calling OS thread is the running member of ``fam`` (not mid-switch)."""
    return (getattr(_tls, "family", None) is fam and fam.current._gl_inner is _tls.inner
            and not _tls.switching)


def _family_of(g: greenlet) -> _Family:
    """Started greenlets belong to the family they ran in; unstarted ones to their parent's."""
    while not g._gl_inner.started:
        g = g._gl_parent
    fam = g._gl_inner.family
    assert fam is not None
    return fam


def _user_frame() -> Any:
    """The innermost frame outside this module: what ``gr_frame`` reports while suspended."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals is globals():
        frame = frame.f_back
    return frame


def _pack(kind: str, a: Any, b: Any) -> Any:
    """What a pending switch() returns for a delivered message (greenlet's packing rules)."""
    if kind == "exit":
        return a
    if b:
        return (a, b) if a else b
    return a[0] if len(a) == 1 else a


# Exceptions travel in one-item lists ("envelopes") that the receiver pops: no local
# variable of a frame that ends up in the exception's traceback may still hold the
# exception, or exception and frame form a cycle that only the cyclic GC breaks, which would
# delay the GreenletExit of greenlets referenced from those frames (greenlet has no frames).

def _raise(envelope: List[BaseException]) -> None:
    """Raise the exception without chaining: greenlet never sets ``__context__`` on delivery."""
    exc = envelope.pop()
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


def _receive(fam: _Family, envelope: List[Any]) -> Tuple[str, Any, Any]:
    """Run in the greenlet that just got control: call the tracer, release what the
    pending call held, raise a thrown exception.

    ``envelope`` ends with the message; whatever precedes it (the greenlet a resumed
    ``switch``/``throw`` was called on) is released after the tracer and the origin, as
    greenlet releases them when the switch returns, before the result is delivered.  A
    failing tracer is uninstalled and its exception is delivered instead, as if it had been
    thrown into this greenlet.
    """
    kind, a, b, origin = envelope.pop()
    tracer = fam.trace
    if tracer is not None:
        try:
            tracer("throw" if kind == "throw" else "switch", (origin, fam.current))
        except BaseException as exc:
            fam.trace = None
            kind, a, b = "throw", exc, None
    del origin
    envelope.clear()
    if kind == "throw":
        thrown = [a]
        del a
        _raise(thrown)
    return kind, a, b


def _handoff(fam: _Family, target: greenlet, msg: _Message) -> Callable[[], None]:
    """Make ``target`` current with ``msg`` in its inbox; return the call that wakes it.

    Everything that can fail (looking up ``run``, starting a thread) happens before any
    state changes.  The returned callable holds no user object, so the caller can drop its
    references first.
    """
    inner = target._gl_inner
    if not inner.started:
        run = target.run  # AttributeError('run') here leaves the greenlet unstarted
        # The new thread first waits for its wake lock, like any suspended greenlet.
        threading.Thread(target=_bootstrap, args=(inner,), daemon=True,
                         name="greenlet-%x" % id(inner)).start()
        target._gl_run = _MISSING
        inner.started, inner.family, inner.pending_run = True, fam, run
        if inner.context is None:
            inner.context, inner.auto_context = contextvars.Context(), True
    inner.inbox = msg
    _tls.switching = True
    fam.current = target
    return inner.wake.release


def _check_family(fam: _Family, target: greenlet) -> None:
    target_family = _family_of(target)
    if target_family is not fam:
        raise error("Cannot switch to a different thread" if target_family.alive else
                    "cannot switch to a different thread (which happens to have exited)")


def _switch(fam: _Family, call: List[Any]) -> Any:
    """Give control to ``call[0]`` (or its first live ancestor) and wait to get it back.

    ``call`` is ``[target, kind, a, b]``.  Like the bound method on greenlet's stack, the
    pending call keeps its target alive until control comes back, and ``_receive`` releases
    it before the result is delivered: a delivered exception keeps this frame (and the
    caller's) in its traceback, so they must reference the target only through ``call``.
    (An error raised before switching, like greenlet's, keeps the target until handled.)
    """
    me: _Inner = _tls.inner
    target, kind, a, b = call
    del call[1:]
    while target._gl_inner.dead:
        target = target._gl_parent
    _check_family(fam, target)
    msg = (kind, a, b, fam.current)
    if target is fam.current:  # switching to oneself returns the arguments
        go = None
        me.inbox = msg
    else:
        go = _handoff(fam, target, msg)
    # While suspended this frame must not reference our own greenlet object (the origin in
    # msg), or it could never be collected.
    del target, kind, a, b, msg
    if go is not None:
        me.frame = _user_frame()
        if me.is_main:
            me.snapshot = contextvars.copy_context()
        go()
        me.wake.acquire()
        _tls.switching = False
        me.frame = me.snapshot = None
    call.append(me.take())
    return _pack(*_receive(fam, call))


def _bootstrap(inner: _Inner) -> None:
    """Body of a greenlet's thread: run it inside its own context, then pass on the result."""
    inner.wake.acquire()
    fam = inner.family
    assert fam is not None and inner.context is not None
    _tls.family, _tls.inner, _tls.switching = fam, inner, False
    try:
        inner.context.run(_body, inner, fam)  # _body itself lets nothing escape
    except BaseException as exc:  # the context was already entered, e.g. by another greenlet
        inner.inbox = inner.pending_run = None
        inner.outcome = ("throw", exc, None)
    _finish(inner, fam)


def _body(inner: _Inner, fam: _Family) -> None:
    run, inner.pending_run = inner.pending_run, None
    try:
        kind, a, b = _receive(fam, [inner.take()])  # a thrown exception kills us unstarted
        if kind == "exit":
            a, b = (), {}
        result = run(*a, **b)
    except GreenletExit as exc:
        inner.outcome = ("exit", exc, None)
    except BaseException as exc:
        inner.outcome = ("throw", exc, None)
    else:
        inner.outcome = ("switch", (result,), {})


def _finish(inner: _Inner, fam: _Family) -> None:
    """Die and send the outcome of ``run`` up the parent chain; never returns control here."""
    assert inner.outcome is not None
    kind, a, b = inner.outcome
    inner.outcome = None
    me = fam.current
    inner.dead = True
    target = me._gl_parent
    while True:
        while target._gl_inner.dead:
            target = target._gl_parent
        try:
            _check_family(fam, target)  # only unstarted ancestors can be elsewhere
            go = _handoff(fam, target, (kind, a, b, me))
            break
        except BaseException as exc:  # e.g. an unstarted ancestor without run
            kind, a, b = "throw", exc, None  # greenlet throws that to the next parent
            # Out of parents, greenlet aborts the process; this gives up to the main.
            target = target._gl_parent or fam.main
    del me, target, a, b  # this thread must not drop the last reference to user objects
    go()


def _kill(fam: _Family, g: greenlet) -> None:
    """Raise GreenletExit into suspended ``g``, with the running greenlet as its parent.

    As in greenlet, the real parent is kept (and so kept alive) during the kill and put
    back afterwards, in case ``g`` survives.
    """
    parent, g._gl_parent = g._gl_parent, fam.current
    try:
        _switch(fam, [g, "throw", GreenletExit(_KILL_MESSAGE), None])
    except BaseException as exc:
        sys.unraisablehook(SimpleNamespace(  # type: ignore[arg-type]
            exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
            err_msg="Exception ignored while killing a greenlet", object=g))
    finally:
        g._gl_parent = parent


def _make_exception(typ: Any, val: Any, tb: Any) -> BaseException:
    """Normalize throw()'s arguments the way greenlet (and Python 2's raise) does."""
    if tb is not None and not isinstance(tb, TracebackType):
        raise TypeError("throw() third argument must be a traceback object")
    if isinstance(typ, type) and issubclass(typ, BaseException):
        if isinstance(val, typ):
            exc = val
        elif val is None:
            exc = typ()
        else:
            exc = typ(*val) if isinstance(val, tuple) else typ(val)
    elif isinstance(typ, BaseException):
        if val is not None:
            raise TypeError("instance exception may not have a separate value")
        exc = typ
    else:
        raise TypeError("exceptions must be classes, or instances, not %s"
                        % type(typ).__name__)
    return exc.with_traceback(tb) if tb is not None else exc


class greenlet:  # lower case: the name is greenlet's public API
    """A micro-thread backed by an OS thread; see the module docstring."""

    __slots__ = ("__dict__", "__weakref__", "_gl_inner", "_gl_parent", "_gl_run")

    def __new__(cls, *args: Any, **kwargs: Any) -> greenlet:
        # State is set up here, not in __init__, so subclasses may skip super().__init__.
        self = super().__new__(cls)
        self._gl_parent = getcurrent()
        self._gl_run = _MISSING
        self._gl_inner = _Inner()
        return self

    def __init__(self, run: Any = _MISSING, parent: Optional[greenlet] = None) -> None:
        if run is not _MISSING:
            greenlet.run.fset(self, run)  # type: ignore[attr-defined]
        if parent is not None:
            greenlet.parent.fset(self, parent)  # type: ignore[attr-defined]

    def switch(self, *args: Any, **kwargs: Any) -> Any:
        """Run this greenlet (starting it if needed) until something switches back here."""
        call = [self, "switch", args, kwargs]
        del self, args, kwargs  # only ``call`` may hold them, see _switch
        return _switch(_enter(), call)

    def throw(self, typ: Any = GreenletExit, val: Any = None, tb: Any = None) -> Any:
        """Raise an exception in this greenlet at its pending switch."""
        call = [self, "throw", _make_exception(typ, val, tb), None]
        del self, typ, val, tb  # only ``call`` may hold them, see _switch
        fam = _enter()
        # greenlet returns a GreenletExit thrown into a dead greenlet as a value
        if call[0]._gl_inner.dead and isinstance(call[2], GreenletExit):
            call[1] = "exit"
        return _switch(fam, call)

    @property
    def dead(self) -> bool:
        # As greenlet >= 2.0: the main greenlet of a thread that has exited is dead, and so
        # is every greenlet started in it (greenlet deactivates them, with no GreenletExit).
        inner = self._gl_inner
        return inner.dead or (inner.started and inner.family is not None
                              and not inner.family.alive)

    def __bool__(self) -> bool:
        return self._gl_inner.started and not self.dead

    @property
    def run(self) -> Any:
        if self._gl_inner.is_main:
            raise AttributeError("Main greenlets do not have a run attribute.")
        if self._gl_run is _MISSING:
            raise AttributeError("run")
        return self._gl_run

    @run.setter
    def run(self, value: Any) -> None:
        if self._gl_inner.started:
            raise AttributeError("run cannot be set after the start of the greenlet")
        self._gl_run = value

    @run.deleter
    def run(self) -> None:
        if self._gl_inner.started:
            raise AttributeError("run cannot be set after the start of the greenlet")
        self._gl_run = _MISSING

    @property
    def parent(self) -> Optional[greenlet]:
        return self._gl_parent

    @parent.setter
    def parent(self, value: greenlet) -> None:
        if self._gl_inner.is_main:
            raise AttributeError("cannot set the parent of a main greenlet")
        if not isinstance(value, greenlet):
            raise TypeError("GreenletChecker: Expected any type of greenlet, not "
                            + type(value).__name__)
        p: Optional[greenlet] = value
        while p is not None:
            if p is self:
                raise ValueError("cyclic parent chain")
            p = p._gl_parent
        if self._gl_inner.started and _family_of(value) is not self._gl_inner.family:
            raise ValueError("parent cannot be on a different thread")
        self._gl_parent = value

    @parent.deleter
    def parent(self) -> None:
        raise AttributeError("can't delete attribute")

    @property
    def gr_frame(self) -> Any:
        return self._gl_inner.frame

    @property
    def gr_context(self) -> Optional[contextvars.Context]:
        inner = self._gl_inner
        if inner.is_main:
            if inner.frame is None and _running_here(inner.family):  # type: ignore[arg-type]
                return contextvars.copy_context()
            return inner.snapshot
        if inner.auto_context and inner.context is not None and not len(inner.context):
            return None  # greenlet creates a greenlet's context lazily, on first use
        return inner.context

    @gr_context.setter
    def gr_context(self, value: Optional[contextvars.Context]) -> None:
        if value is not None and not isinstance(value, contextvars.Context):
            raise TypeError("greenlet context must be a contextvars.Context or None")
        inner = self._gl_inner
        if inner.started and not inner.dead and value is not inner.context:
            raise NotImplementedError(
                "threaded_greenlet cannot change the context of a running or suspended greenlet")
        inner.context, inner.auto_context = value, False

    def __repr__(self) -> str:
        inner = self._gl_inner
        if inner.dead:
            state = "dead"
        elif not inner.started:
            state = "pending"
        else:
            state = "main" if inner.is_main else "started"
        return "<%s object at %#x (threaded) %s>" % (type(self).__name__, id(self), state)

    def __del__(self) -> None:
        # greenlet: "If all the references to a greenlet object go away (including the
        # references from the parent attribute of other greenlets), then there is no way to
        # ever switch back to this greenlet. In this case, a GreenletExit exception is
        # generated into the greenlet."  That must run in the greenlet's own family, by its
        # running member: elsewhere (another thread, or mid-switch) the kill is deferred.
        inner = getattr(self, "_gl_inner", None)
        if inner is None or not inner.started or inner.dead or inner.is_main:
            return
        fam = inner.family
        if fam is None or not fam.alive or sys.is_finalizing():
            return  # abandoned: its thread stays blocked, nothing runs
        if _running_here(fam):
            _kill(fam, self)
        else:
            with fam.lock:
                fam.deferred.append(self)  # resurrects self until the family runs again

    getcurrent: Any = None  # set below: greenlet exposes these on the class too
    settrace: Any = None
    gettrace: Any = None
    GreenletExit = GreenletExit
    error = error


def getcurrent() -> greenlet:
    """The greenlet running in the calling thread (its main greenlet if none was started)."""
    return _enter().current


def settrace(callback: Any) -> Any:
    """Install ``callback(event, (origin, target))`` for this thread; return the previous one."""
    fam = _enter()
    previous, fam.trace = fam.trace, callback
    return previous


def gettrace() -> Any:
    """This thread's trace callback, or None."""
    return _enter().trace


greenlet.getcurrent = staticmethod(getcurrent)
greenlet.settrace = staticmethod(settrace)
greenlet.gettrace = staticmethod(gettrace)
