"""The model's state of one greenlet object, and of its blocks and switches: named
fields, no positional tuples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from greenfuzz.harness.families import Op
from greenfuzz.harness.families.deliveries import Delivery, Flying, State
from greenfuzz.harness.target.runtime import ExcValue

UNSTARTED, RUNNING, SUSPENDED, DEAD = State

#: One event of a trace: (greenlet, op index or -1, kind, payload).
Event = Tuple[str, int, str, object]


@dataclass
class Level:
    """A block being performed: the op index of the block op, and the index past its ops."""

    start: int
    end: int


@dataclass
class Pending:
    """A switch to deliver on the next step: control goes from ``origin`` to ``dest``."""

    dest: MG
    delivery: Delivery
    origin: MG


@dataclass(eq=False)
class MG:
    """A model greenlet object (compared by identity)."""

    name: str
    script: Tuple[Op, ...]  # flattened: event op indexes are indexes here
    parent: Optional[MG]
    state: State = UNSTARTED
    pc: int = 0
    rc: int = 0
    #: The greenlet its pending ``switch``/``throw`` call holds.
    hold: Optional[MG] = None
    is_main: bool = False
    #: The main greenlet of a program's other thread (``ThreadParent``).
    foreign: bool = False
    #: Freed: its reference count reached zero (the liveness check's "gone").
    gone: bool = False
    #: Running its finally parts because it is being killed (``kill``).
    killing: bool = False
    #: What other than ``GreenletExit`` its kill ended with (a finally part raised).
    kill_raised: Optional[ExcValue] = None
    #: Performing an ``InThread`` block: its ops run in another thread.
    in_thread: bool = False
    #: Its ``run`` function is at the bottom of its stack (not main's while ``atexit``
    #: callbacks run: the interpreter's exit calls them after ``run_main`` returned).
    run_frame: bool = True
    #: How ``Spawn`` made it (``Spawn.kind``, ``Spawn.subclass``).
    kind: str = "plain"
    subclass: bool = False
    #: The blocks being performed, outermost first.
    levels: List[Level] = field(default_factory=list)
    #: The exceptions its open ``Handle`` blocks handle (family ``exceptions``).
    handling: List[Flying] = field(default_factory=list)
    #: Each family's state of this greenlet, by family name (``Model.of``).
    ext: Dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<MG {self.name} {self.state.value} pc={self.pc} rc={self.rc}>"
