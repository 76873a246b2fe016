"""Closed sets of words that both sides use: the controller (recipes, options, reports)
and the target code (scale runs, memory checks) name each set once, here.

Each set is a ``TextEnum``: a member *is* its word, so JSON, command lines and
comparisons with plain strings stay as they were.  Standard library only, Python 3.9+;
pasted into scale and raw-memory reproducers.
"""

from enum import Enum


class TextEnum(str, Enum):
    """A closed set of words: each member *is* its word (in JSON, in f-strings, in ``==``
    with a plain string) on every Python from 3.9, where ``str()`` of a mixed-in enum
    would otherwise say ``Class.MEMBER``."""

    def __str__(self):
        return str.__str__(self)


class Metric(TextEnum):
    """What a memory check measures (``memory.MemorySample``)."""

    USS = "uss"  # unique set size (psutil), RSS where unavailable
    ANON = "anon"  # anonymous memory: heap, arenas, mmap'd stacks
    RSS = "rss"  # resident set size


class Via(TextEnum):
    """How a parked or scale greenlet descends before it switches away."""

    PYTHON = "python"  # plain Python calls
    C = "c"  # each level through a C function calling back (``map``)


class Shape(TextEnum):
    """The shapes of a scale recipe (``scale_runtime``)."""

    PARKED = "parked"
    WAVES = "waves"
    CHAIN = "chain"
    RING = "ring"
    TREE = "tree"
    RANDOM = "random"  # a seeded stream of every operation, checked by the model in lockstep
