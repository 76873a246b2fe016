"""What the model passes between greenlets, shared by the model core and the families'
model rules: deliveries (switch arguments or an exception), exceptions in flight, and
the errors a model rule may raise."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from greenfuzz.harness.families.base import Exc
from greenfuzz.harness.target.runtime import ExcValue

#: Exception types a script's ``except Exception`` catches; GreenletExit derives from
#: BaseException ("GreenletExit ... does not inherit from Exception", api docs).
CATCHABLE = {"ValueError", "KeyError", "RuntimeError", "FuzzError", "TypeError",
             "AttributeError", "greenlet.error"}


class State(enum.Enum):
    """Where a model greenlet is in its life."""

    UNSTARTED = "unstarted"
    RUNNING = "running"
    SUSPENDED = "suspended"
    DEAD = "dead"


class ModelError(RuntimeError):
    """The model met a situation it does not cover; never a verdict on an implementation."""


class Undecided(ModelError):
    """A state reached through the public API that greenlet's documentation gives no
    outcome for: a greenlet ends into a parent chain leading to a thread that has ended
    (greenlet 1.1.3-3.5.6 abort the process there; docs/upstream/
    parent-chain-into-ended-thread.md); or whose outcome depends on the interpreter's
    version (a thread started from an ``atexit`` callback: ``Model.thread_starts``).
    Never left out of programs: the model predicts
    the events up to it and an ``undecided`` event, after which any completed run agrees;
    a crash there is still a finding (``known`` for greenlet, from its bundled data)."""


class Unsupported(ModelError):
    """A program whose outcome the model does not predict on purpose (a finalizer that
    would run in the middle of a switch, say); strategies leave such programs out."""


@dataclass
class Args:
    """A delivery of switch arguments (or a return value, as a 1-tuple).

    ``exit_value`` marks a GreenletExit turned into a value (``g_handle_exit``): a
    suspended receiver gets the exception object, but an unstarted one is started with
    no arguments at all (verified on greenlet 3.5.6).
    """

    args: Tuple
    kwargs: Dict
    exit_value: bool = False


@dataclass(eq=False)
class Flying:
    """An exception object as it travels (family ``exceptions``): its ``__cause__``, its
    ``__context__`` (for a handled one) and the ``run_*`` functions its
    ``__traceback__`` holds, outermost first.  Python adds a frame's entry each time the
    object is raised in or propagates into that frame, so a greenlet's ``run`` is added
    when the exception reaches its ``run`` frame (never twice for one pass: a bare
    re-raise adds nothing), and an object thrown on with ``throw(*sys.exc_info())``
    keeps what it had (test_throw; verified on 3.5.6)."""

    exc: ExcValue
    cause: Optional[ExcValue] = None
    context: Optional[ExcValue] = None
    tb: List[str] = field(default_factory=list)

    def record(self) -> Tuple[ExcValue, Optional[ExcValue], Tuple[str, ...]]:
        """What ``runtime.in_flight`` records of it."""
        return (self.exc, self.cause, tuple(self.tb))


@dataclass
class Throwing:
    """A delivery of an exception, raised where the receiver is suspended (``obj``: the
    object itself, when it already has a history; None for a fresh one)."""

    exc: ExcValue
    obj: Optional[Flying] = None


Delivery = Union[Args, Throwing]


def pack(args: Tuple, kwargs: Dict) -> object:
    """What a resumed ``switch()`` returns.

    switching docs: "If the greenlet *was* running, multiple arguments will be a tuple,
    and keyword arguments will be a dict; any number of positional arguments with
    keyword arguments will have the entire set in a tuple, with positional arguments in
    their own nested tuple, and keyword arguments as a dict in the last element".  One
    argument is delivered as itself.  With no arguments greenlet delivers ``()``, not the
    ``None`` its docstring claims (verified on 1.1.2 to 3.5.6).
    """
    if kwargs:
        return (tuple(args), dict(kwargs)) if args else dict(kwargs)
    if len(args) == 1:
        return args[0]
    return tuple(args)


def exc_value(exc: Exc) -> ExcValue:
    return ExcValue(exc.type, tuple(exc.args))


def harness_error(type_name: str) -> ExcValue:
    """An error raised by the implementation: messages vary by release, so args are free."""
    return ExcValue(type_name, None)


__all__ = ["CATCHABLE", "Args", "Delivery", "ExcValue", "Flying", "ModelError", "State", "Throwing",
           "Undecided", "Unsupported", "exc_value", "harness_error", "pack"]
