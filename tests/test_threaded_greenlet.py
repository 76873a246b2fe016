"""greenfuzz.harness.envs.threaded_greenlet against the real greenlet: same scenario, same
observations.

Every test takes ``gl``, the implementation module, and runs once with ``greenlet`` and
once with ``greenfuzz.harness.envs.threaded_greenlet``; the expected values are greenlet 3.x
behaviour.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import sys
import threading
import time
import weakref
from types import ModuleType
from typing import Any, Callable, List

import greenlet as real_greenlet
import pytest

from greenfuzz.harness.envs import threaded_greenlet

JOIN_TIMEOUT = 5.0


@pytest.fixture(params=[real_greenlet, threaded_greenlet], ids=["greenlet", "threaded"])
def gl(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


def outcome(fn: Callable[[], Any]) -> Any:
    """``("ok", value)`` or ``(exception type name, str(exception))``."""
    try:
        return ("ok", fn())
    except BaseException as e:
        return (type(e).__name__, str(e))


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh OS thread and return its outcome()."""
    box: List[Any] = []
    thread = threading.Thread(target=lambda: box.append(outcome(fn)), daemon=True)
    thread.start()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "thread did not finish"
    return box[0]


def echo(gl: ModuleType) -> Any:
    """A started greenlet that sends back, as ("got", x), whatever its switch() returned."""
    main = gl.getcurrent()

    def run() -> None:
        got = main.switch("ready")
        while True:
            got = main.switch(("got", got))

    g = gl.greenlet(run)
    assert g.switch() == "ready"
    return g


def catcher(gl: ModuleType) -> Any:
    """A started greenlet that reports each exception thrown into it as (name, args).

    It ends when switched to with "stop" (being dropped would not kill it).
    """
    main = gl.getcurrent()

    def run() -> None:
        reply: Any = "ready"
        while True:
            try:
                if main.switch(reply) == "stop":
                    return
            except BaseException as e:
                reply = (type(e).__name__, e.args)

    g = gl.greenlet(run)
    assert g.switch() == "ready"
    return g


# --- switch and return packing ------------------------------------------------------------

SHAPES = [
    ((), {}, ()),
    ((1,), {}, 1),
    ((None,), {}, None),
    ((1, 2), {}, (1, 2)),
    ((), {"k": 1}, {"k": 1}),
    ((1,), {"k": 1}, ((1,), {"k": 1})),
    ((1, 2), {"k": 1, "j": 2}, ((1, 2), {"k": 1, "j": 2})),
]


@pytest.mark.parametrize(("args", "kwargs", "packed"), SHAPES)
def test_resumed_switch_packs_arguments(gl, args, kwargs, packed):
    g = echo(gl)
    assert g.switch(*args, **kwargs) == ("got", packed)
    assert gl.getcurrent().switch(*args, **kwargs) == packed  # switching to oneself


@pytest.mark.parametrize(("args", "kwargs", "packed"), SHAPES)
def test_start_passes_arguments_to_run(gl, args, kwargs, packed):
    assert gl.greenlet(lambda *a, **k: (a, k)).switch(*args, **kwargs) == (args, kwargs)

    def self_switch() -> Any:
        return gl.getcurrent().switch(*args, **kwargs)

    assert gl.greenlet(self_switch).switch() == packed


def test_run_result_and_exceptions_go_to_parent(gl):
    g = gl.greenlet(lambda: "result")
    assert (g.switch(), g.dead, bool(g)) == ("result", True, False)

    def boom() -> None:
        raise ValueError("boom")

    g = gl.greenlet(boom)
    assert outcome(g.switch) == ("ValueError", "boom")
    assert g.dead

    def leave() -> None:
        raise gl.GreenletExit("bye")

    result = gl.greenlet(leave).switch()
    assert type(result) is gl.GreenletExit and result.args == ("bye",)


def test_result_goes_to_suspended_parent(gl):
    parent = echo(gl)
    child = gl.greenlet(lambda x: x * 2, parent=parent)
    assert child.switch(21) == ("got", 42)


def test_switching_to_dead_greenlet_goes_up_the_parent_chain(gl):
    g = gl.greenlet(lambda: "ret")
    g.switch()
    assert g.switch() == ()
    assert g.switch(5) == 5
    assert g.switch(1, k=2) == ((1,), {"k": 2})

    parent = echo(gl)
    dead = gl.greenlet(lambda: None, parent=parent)
    assert dead.switch() == ("got", None)
    assert dead.switch(3) == ("got", 3)

    dead.parent = gl.greenlet(lambda *a, **k: ("started", a, k))
    assert dead.switch(7, y=1) == ("started", (7,), {"y": 1})


def test_unstarted_parent_is_started_by_dying_child(gl):
    parent = gl.greenlet(lambda *a: ("parent ran", a))
    child = gl.greenlet(lambda: 1, parent=parent)
    assert child.switch() == ("parent ran", (1,))
    assert parent.dead

    def leave() -> None:
        raise gl.GreenletExit

    # GreenletExit turned into a value starts an unstarted parent with no arguments
    parent = gl.greenlet(lambda *a: ("parent ran", a))
    assert gl.greenlet(leave, parent=parent).switch() == ("parent ran", ())

    # a parent without run: the AttributeError goes to its own parent
    parent = gl.greenlet()
    child = gl.greenlet(lambda: 1, parent=parent)
    assert outcome(child.switch) == ("AttributeError", "run")
    assert (child.dead, parent.dead, bool(parent)) == (True, False, False)


def test_missing_or_bad_run(gl):
    g = gl.greenlet()
    assert outcome(g.switch) == ("AttributeError", "run")
    assert (g.dead, bool(g)) == (False, False)  # still unstarted

    g = gl.greenlet(1)
    assert outcome(g.switch) == ("TypeError", "'int' object is not callable")
    assert g.dead  # raised inside the greenlet


# --- throw -------------------------------------------------------------------------------

def test_throw_variants(gl):
    g = catcher(gl)
    try:
        raise KeyError("for a traceback")
    except KeyError:
        tb = sys.exc_info()[2]
    assert g.throw() == ("GreenletExit", ())
    assert g.throw(ValueError) == ("ValueError", ())
    assert g.throw(ValueError, "v") == ("ValueError", ("v",))
    assert g.throw(ValueError, ("a", "b")) == ("ValueError", ("a", "b"))
    assert g.throw(ValueError, ValueError("w")) == ("ValueError", ("w",))
    assert g.throw(ValueError("i")) == ("ValueError", ("i",))
    assert g.throw(ValueError, "t", tb) == ("ValueError", ("t",))
    assert g.throw(gl.GreenletExit("x")) == ("GreenletExit", ("x",))
    g.switch("stop")


def test_throw_rejects_bad_arguments(gl):
    g = catcher(gl)
    assert outcome(lambda: g.throw(ValueError("x"), "y")) == (
        "TypeError", "instance exception may not have a separate value")
    assert outcome(lambda: g.throw(1)) == (
        "TypeError", "exceptions must be classes, or instances, not int")
    assert outcome(lambda: g.throw(ValueError, 1, 2)) == (
        "TypeError", "throw() third argument must be a traceback object")
    assert bool(g) and not g.dead
    g.switch("stop")


def test_throw_keeps_traceback(gl):
    try:
        raise KeyError
    except KeyError:
        tb = sys.exc_info()[2]
    main = gl.getcurrent()

    def run() -> Any:
        try:
            main.switch()
        except ValueError as e:
            frames = []
            t = e.__traceback__
            while t is not None:
                frames.append(t.tb_frame)
                t = t.tb_next
            return tb.tb_frame in frames

    g = gl.greenlet(run)
    g.switch()
    assert g.throw(ValueError, None, tb) is True


def test_throw_into_unstarted_greenlet(gl):
    ran = []
    g = gl.greenlet(lambda: ran.append(1))
    result = g.throw()
    assert type(result) is gl.GreenletExit
    assert (g.dead, ran) == (True, [])

    g = gl.greenlet(lambda: ran.append(1))
    assert outcome(lambda: g.throw(KeyError("k"))) == ("KeyError", "'k'")
    assert (g.dead, ran) == (True, [])

    parent = gl.greenlet(lambda *a: ("parent ran", a))
    assert gl.greenlet(lambda: 1, parent=parent).throw() == ("parent ran", ())
    assert outcome(lambda: gl.greenlet(parent=gl.greenlet()).throw(KeyError)) == (
        "AttributeError", "run")


def test_throw_into_dead_greenlet(gl):
    g = gl.greenlet(lambda: 1)
    g.switch()
    assert type(g.throw()) is gl.GreenletExit
    assert outcome(lambda: g.throw(KeyError("k"))) == ("KeyError", "'k'")

    main = gl.getcurrent()
    results = []

    def watcher() -> str:
        while len(results) < 3:
            try:
                results.append(("value", type(main.switch()).__name__))
            except BaseException as e:
                results.append(("raised", type(e).__name__))
        return "done"

    parent = gl.greenlet(watcher)
    parent.switch()
    dead = gl.greenlet(lambda: None, parent=parent)
    dead.switch()
    results.clear()
    dead.throw()
    dead.throw(KeyError)
    assert results == [("value", "GreenletExit"), ("raised", "KeyError")]
    assert parent.switch() == "done" and parent.dead


def test_throw_into_current_greenlet(gl):
    assert outcome(lambda: gl.getcurrent().throw(KeyError("here"))) == ("KeyError", "'here'")

    def run() -> Any:
        return outcome(gl.getcurrent().throw)

    assert gl.greenlet(run).switch() == ("GreenletExit", "")


def test_delivered_exceptions_are_not_chained(gl):
    main = gl.getcurrent()

    def run() -> Any:
        try:
            raise IndexError
        except IndexError:
            try:
                main.switch()
            except KeyError as e:
                return e.__context__

    g = gl.greenlet(run)
    g.switch()
    assert g.throw(KeyError) is None

    def boom() -> None:
        raise KeyError

    try:
        raise IndexError
    except IndexError:
        try:
            gl.greenlet(boom).switch()
        except KeyError as e:
            assert e.__context__ is None


# --- attributes ------------------------------------------------------------------------

def test_dead_and_bool(gl):
    main = gl.getcurrent()
    assert (main.dead, bool(main), main.parent) == (False, True, None)
    g = gl.greenlet(lambda: main.switch())
    assert (g.dead, bool(g)) == (False, False)
    g.switch()
    assert (g.dead, bool(g)) == (False, True)
    g.switch()
    assert (g.dead, bool(g)) == (True, False)


def test_parent_attribute(gl):
    main = gl.getcurrent()
    g = gl.greenlet(lambda: main.switch())
    assert g.parent is main
    assert gl.greenlet(lambda: 1, parent=None).parent is main
    for bad in (None, 1):
        assert outcome(lambda bad=bad: setattr(g, "parent", bad)) == (
            "TypeError", "GreenletChecker: Expected any type of greenlet, not "
            + type(bad).__name__)
    assert outcome(lambda: gl.greenlet(lambda: 1, parent=1))[0] == "TypeError"
    assert outcome(lambda: delattr(g, "parent"))[0] == "AttributeError"
    for value in (g, None, 1):
        assert outcome(lambda value=value: setattr(main, "parent", value)) == (
            "AttributeError", "cannot set the parent of a main greenlet")
    child = gl.greenlet(lambda: 1, parent=g)
    assert outcome(lambda: setattr(g, "parent", child)) == ("ValueError", "cyclic parent chain")
    assert outcome(lambda: setattr(g, "parent", g)) == ("ValueError", "cyclic parent chain")
    other = gl.greenlet(lambda: 1)
    g.parent = other
    assert g.parent is other


def test_run_attribute(gl):
    def fn() -> Any:
        return gl.getcurrent().parent.switch("suspended")

    assert outcome(lambda: gl.greenlet().run) == ("AttributeError", "run")
    assert gl.greenlet(None).run is None
    g = gl.greenlet(fn)
    assert g.run is fn
    g.run = len
    assert g.run is len
    del g.run
    assert outcome(lambda: g.run) == ("AttributeError", "run")
    g.run = fn
    assert g.switch() == "suspended"
    assert outcome(lambda: g.run) == ("AttributeError", "run")
    message = "run cannot be set after the start of the greenlet"
    assert outcome(lambda: setattr(g, "run", len)) == ("AttributeError", message)
    assert outcome(lambda: delattr(g, "run")) == ("AttributeError", message)
    assert outcome(lambda: gl.getcurrent().run) == (
        "AttributeError", "Main greenlets do not have a run attribute.")


def test_subclass_with_run_method(gl):
    class Sub(gl.greenlet):
        def run(self, *args: Any) -> Any:
            return ("Sub.run", args, self.extra)

        def __init__(self) -> None:
            super().__init__()
            self.extra = "x"

    class NoInit(gl.greenlet):
        def __init__(self) -> None:  # does not call super().__init__
            pass

        def run(self) -> str:
            return "ok"

    s = Sub()
    assert s.run.__func__ is Sub.run
    assert s.switch(1) == ("Sub.run", (1,), "x")
    assert s.run.__func__ is Sub.run  # a class attribute outlives the start
    assert NoInit().switch() == "ok"
    assert isinstance(s, gl.greenlet) and gl.greenlet.getcurrent() is gl.getcurrent()


def test_gr_frame(gl):
    main = gl.getcurrent()

    def inner() -> None:
        main.switch()

    def outer() -> None:
        seen.append(main.gr_frame is main_frame)
        seen.append(gl.getcurrent().gr_frame)
        inner()

    seen: List[Any] = []
    main_frame = sys._getframe()
    g = gl.greenlet(outer)
    assert g.gr_frame is None
    g.switch()
    assert seen == [True, None]
    assert main.gr_frame is None
    frame = g.gr_frame
    assert (frame.f_code.co_name, frame.f_back.f_code.co_name) == ("inner", "outer")
    del frame
    g.switch()
    assert g.gr_frame is None


def test_gr_context(gl):
    var = contextvars.ContextVar("var", default="default")
    main = gl.getcurrent()
    token = var.set("main")
    try:
        def run() -> Any:
            before = var.get()
            main.switch()
            var.set("g")
            main.switch()
            return before

        g = gl.greenlet(run)
        assert g.gr_context is None
        g.switch()
        assert g.gr_context is None  # nothing set yet
        g.switch()
        assert dict(g.gr_context) == {var: "g"}
        assert g.switch() == "default"  # a new greenlet starts with an empty context
        assert dict(g.gr_context) == {var: "g"}  # a dead greenlet keeps it
        assert var.get() == "main"
        assert main.gr_context[var] == "main"

        ctx = contextvars.copy_context()
        g = gl.greenlet(lambda: (var.get(), var.set("changed"))[0])
        g.gr_context = ctx
        assert g.gr_context is ctx
        assert g.switch() == "main"
        assert g.gr_context is ctx and ctx[var] == "changed"
        assert outcome(lambda: setattr(g, "gr_context", 1)) == (
            "TypeError", "greenlet context must be a contextvars.Context or None")
        g.gr_context = None
        assert g.gr_context is None
    finally:
        var.reset(token)


# --- threads ---------------------------------------------------------------------------

def test_finished_greenlets_leave_no_threads(gl):
    before = threading.active_count()
    for i in range(20):
        assert gl.greenlet(lambda i=i: i).switch() == i
    deadline = time.monotonic() + JOIN_TIMEOUT
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert threading.active_count() <= before


def test_cross_thread_switch_and_throw_raise_error(gl):
    main = gl.getcurrent()
    g = gl.greenlet(lambda: main.switch())
    g.switch()
    assert in_thread(g.switch)[0] == "error"
    assert in_thread(g.throw)[0] == "error"
    dead = gl.greenlet(lambda: 1)
    dead.switch()
    assert in_thread(dead.switch)[0] == "error"
    # unstarted greenlets belong to their parent's thread
    assert in_thread(lambda: gl.greenlet(lambda: 1, parent=g).switch())[0] == "error"
    assert in_thread(lambda: gl.greenlet(lambda: "x").switch()) == ("ok", "x")
    g.switch()


def test_each_thread_has_its_own_main_greenlet(gl):
    main = gl.getcurrent()

    def probe() -> Any:
        m = gl.getcurrent()
        return (m is main, m.parent, m.dead, bool(m), gl.gettrace())

    assert in_thread(probe) == ("ok", (False, None, False, True, None))


def test_parent_on_another_thread(gl):
    main = gl.getcurrent()
    here = gl.greenlet(lambda: main.switch())
    here.switch()
    dead = gl.greenlet(lambda: 1)
    dead.switch()

    def there() -> Any:
        other = gl.greenlet(lambda: gl.getcurrent().parent.switch())
        other.switch()
        unstarted = gl.greenlet(lambda: 1)
        unstarted.parent = here  # allowed: it is not started
        return (outcome(lambda: setattr(other, "parent", here)),
                outcome(lambda: setattr(dead, "parent", gl.getcurrent())),
                unstarted.parent is here, outcome(unstarted.switch)[0])

    message = ("ValueError", "parent cannot be on a different thread")
    assert in_thread(there) == ("ok", (message, message, True, "error"))
    here.switch()


def test_greenlet_of_exited_thread_is_abandoned(gl):
    box: List[Any] = []
    ran: List[str] = []

    def there() -> None:
        def run() -> None:
            try:
                gl.getcurrent().parent.switch()
            finally:
                ran.append("finally")

        g = gl.greenlet(run)
        g.switch()
        box.append(g)
        box.append(gl.greenlet(lambda: 1))

    assert in_thread(there) == ("ok", None)
    assert outcome(box[1].switch)[0] == "error"
    box.clear()
    gc.collect()
    assert ran == []


# --- garbage collection ----------------------------------------------------------------

def suspended(gl: ModuleType, log: List[Any], tag: str) -> Any:
    """A started greenlet that logs how it ends (exception, parent at that time, finally)."""
    main = gl.getcurrent()

    def run() -> None:
        try:
            main.switch()
        except BaseException as e:
            log.append((tag, type(e).__name__, gl.getcurrent().parent))
            raise
        finally:
            log.append((tag, "finally"))

    g = gl.greenlet(run)
    g.switch()
    return g


def test_dropping_suspended_greenlet_raises_greenlet_exit(gl):
    log: List[Any] = []
    main = gl.getcurrent()
    g = suspended(gl, log, "g")
    ref = weakref.ref(g)
    del g
    assert log == [("g", "GreenletExit", main), ("g", "finally")]
    assert ref() is None

    gl.greenlet(lambda: main.switch("temporary")).switch()  # dropped right after: no error
    assert suspended(gl, log, "temp") is not None  # a temporary is killed when dropped
    assert log[-2:] == [("temp", "GreenletExit", main), ("temp", "finally")]


def test_greenlet_exit_runs_in_the_greenlet_that_dropped_it(gl):
    log: List[Any] = []
    box = [suspended(gl, log, "g")]
    box[0].parent = echo(gl)

    def dropper() -> Any:
        box.clear()
        return gl.getcurrent()

    dropping = gl.greenlet(dropper)
    assert dropping.switch() is dropping
    assert log == [("g", "GreenletExit", dropping), ("g", "finally")]


def test_killed_greenlet_keeps_its_parent_alive_until_it_is_gone(gl):
    log: List[Any] = []
    main = gl.getcurrent()

    def run() -> None:
        try:
            main.switch()
        except gl.GreenletExit as e:
            log.append((gl.getcurrent().tag, e.args))
            raise

    parent = gl.greenlet(run)
    parent.tag = "parent"
    parent.switch()
    child = gl.greenlet(run, parent=parent)
    child.tag = "child"
    child.switch()
    del parent
    del child  # the child dies first, then its parent loses its last reference
    message = "Killing the greenlet because all references have vanished."
    assert log == [("child", (message,)), ("parent", (message,))]


def test_pending_switch_releases_its_target_before_delivering(gl):
    # The caller's pending switch is the last reference to a greenlet that dropped its own:
    # it is killed as soon as the caller gets control back, before the caller sees the
    # exception or value (found by greenfuzz, seed 7).
    log: List[Any] = []
    box = {}

    def run() -> None:
        del box["g"]
        try:
            box["u"].throw(ValueError)  # u is unstarted: it dies, ValueError goes to main
        except BaseException as e:
            log.append(type(e).__name__)
            raise

    box["u"] = gl.greenlet(lambda: None)
    box["g"] = gl.greenlet(run)
    with pytest.raises(ValueError):
        try:
            box["g"].switch()
        finally:
            log.append("main")
    assert log == ["GreenletExit", "main"]

    log.clear()
    main = gl.getcurrent()

    def send() -> None:
        del box["g"]
        try:
            main.switch("value")
        except BaseException as e:
            log.append(type(e).__name__)
            raise

    box["g"] = gl.greenlet(send)
    assert box["g"].switch() == "value"
    assert log == ["GreenletExit"]


def test_exception_leaving_a_greenlet_does_not_keep_its_frames(gl):
    # once the exception is gone, so are the dead greenlet's frames and their locals
    log: List[Any] = []

    def run() -> None:
        other = suspended(gl, log, "other")  # noqa: F841 - held by this frame only
        raise KeyError("k")

    with pytest.raises(KeyError):
        gl.greenlet(run).switch()
    assert [entry[:2] for entry in log] == [("other", "GreenletExit"), ("other", "finally")]

    log.clear()
    main = gl.getcurrent()

    def wait() -> None:
        other = suspended(gl, log, "other")  # noqa: F841 - held by this frame only
        main.switch()

    g = gl.greenlet(wait)
    g.switch()
    with pytest.raises(ValueError):
        g.throw(ValueError("thrown"))
    assert [entry[:2] for entry in log] == [("other", "GreenletExit"), ("other", "finally")]


def test_dropping_unstarted_or_dead_greenlet_runs_nothing(gl):
    ran: List[int] = []
    g = gl.greenlet(lambda: ran.append(1))
    del g
    g = gl.greenlet(lambda: ran.append(2))
    g.switch()
    del g
    gc.collect()
    assert ran == [2]


def test_suspended_greenlet_in_a_cycle_is_not_killed(gl):
    # greenlet does not traverse suspended frames, so a self-reference leaks it
    log: List[str] = []
    main = gl.getcurrent()

    def run() -> None:
        me = gl.getcurrent()  # noqa: F841 - the reference is the point
        try:
            main.switch()
        finally:
            log.append("finally")

    g = gl.greenlet(run)
    g.switch()
    del g
    gc.collect()
    assert log == []


def test_drop_from_another_thread_is_deferred(gl):
    log: List[Any] = []
    main = gl.getcurrent()
    box = [suspended(gl, log, "g")]
    assert in_thread(box.clear) == ("ok", None)
    assert log == []
    assert gl.getcurrent() is main  # the owning thread kills it on its next API call
    assert log == [("g", "GreenletExit", main), ("g", "finally")]


# --- tracing -----------------------------------------------------------------------------

def test_trace_events(gl):
    main = gl.getcurrent()
    names = {id(main): "main"}
    log: List[Any] = []

    def name(g: Any) -> str:
        return names.get(id(g), "?")

    def tracer(event: str, args: Any) -> None:
        origin, target = args
        log.append((event, name(origin), name(target), name(gl.getcurrent())))

    def run() -> None:
        main.switch()
        with contextlib.suppress(KeyError):
            main.switch()
        raise ValueError

    g = gl.greenlet(run)
    names[id(g)] = "g"
    u = gl.greenlet(lambda: 1)
    names[id(u)] = "u"
    assert gl.settrace(tracer) is None
    try:
        assert gl.gettrace() is tracer
        assert in_thread(gl.gettrace) == ("ok", None)  # per thread
        g.switch()
        g.switch()
        assert outcome(lambda: g.throw(KeyError))[0] == "ValueError"
        main.switch()
        u.throw()
        u.switch()
    finally:
        assert gl.settrace(None) is tracer
    assert gl.gettrace() is None
    assert log == [
        ("switch", "main", "g", "g"), ("switch", "g", "main", "main"),
        ("switch", "main", "g", "g"), ("switch", "g", "main", "main"),
        ("throw", "main", "g", "g"), ("throw", "g", "main", "main"),
        ("switch", "main", "main", "main"),
        ("throw", "main", "u", "u"), ("switch", "u", "main", "main"),
        ("switch", "main", "main", "main"),
    ]


def test_trace_exception_uninstalls_and_is_thrown_into_target(gl):
    main = gl.getcurrent()

    def bad(event: str, args: Any) -> None:
        raise KeyError(event)

    def run() -> Any:
        try:
            main.switch()
        except BaseException as e:
            return ("caught", type(e).__name__, e.args)

    try:
        g = gl.greenlet(run)
        gl.settrace(bad)
        assert outcome(g.switch) == ("KeyError", "'switch'")  # raised in g at its start
        assert (g.dead, gl.gettrace()) == (True, None)

        g = gl.greenlet(run)
        g.switch()
        gl.settrace(bad)
        assert g.switch(1) == ("caught", "KeyError", ("switch",))
        assert gl.gettrace() is None

        g = gl.greenlet(run)
        g.switch()
        gl.settrace(bad)
        assert g.throw(IndexError) == ("caught", "KeyError", ("throw",))
    finally:
        gl.settrace(None)
