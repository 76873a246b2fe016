"""Strategies for the data that flows through switches: values, arguments, exceptions.

Values stay small and printable (they end up in reproducers) but cover every shape that
``switch()`` packing distinguishes: scalars, tuples (including the 1-tuple and the empty
tuple, which packing produces itself) and dicts.
"""

from __future__ import annotations

from functools import cache
from typing import Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families.base import Exc, Value

#: Keyword names for ``switch(**kwargs)``: valid identifiers, none shadowing anything.
KEYWORDS = ("a", "b", "c", "key", "x")

#: Exception types a script can catch with ``except Exception``.
CATCHABLE_TYPES = ("ValueError", "KeyError", "RuntimeError", "FuzzError")
#: Exceptions a program may throw or raise: the catchable ones and GreenletExit.
THROWABLE_TYPES = (*CATCHABLE_TYPES, "GreenletExit")


@cache
def scalars() -> st.SearchStrategy[Value]:
    """Values that shrink to ``None``; ints and short strings tell events apart."""
    return st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=99),
        st.sampled_from(("x", "y", "")),
    )


@cache
def values() -> st.SearchStrategy[Value]:
    """Plain data: scalars, or a tuple or str-keyed dict of a few scalars."""
    return st.one_of(
        scalars(),
        st.lists(scalars(), max_size=2).map(tuple),
        st.dictionaries(st.sampled_from(KEYWORDS), scalars(), max_size=2),
    )


@cache
def arguments() -> st.SearchStrategy[Tuple[Tuple[Value, ...], Tuple[Tuple[str, Value], ...]]]:
    """``(args, kwargs)`` in every shape switch() packs differently: none, one, several,
    keywords only, both."""
    args = st.lists(values(), max_size=3).map(tuple)
    kwargs = st.dictionaries(st.sampled_from(KEYWORDS), scalars(), max_size=2).map(
        lambda d: tuple(sorted(d.items()))
    )
    return st.tuples(args, kwargs)


@cache
def exceptions(types: Tuple[str, ...] = CATCHABLE_TYPES,
               max_args: int = 2) -> st.SearchStrategy[Exc]:
    """An exception type from ``types`` with a few scalar args."""
    return st.builds(
        Exc,
        st.sampled_from(types),
        st.lists(scalars(), max_size=max_args).map(tuple),
    )
