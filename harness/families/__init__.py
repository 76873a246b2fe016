"""Families of operations, one module each: its op types (frozen dataclasses), their
validation, description, rendering and model rules, its strategy fragment and its hooks
into the model (``base.OpSpec``, ``base.Family``).

Every other stage reaches ops through the registry here: the IR validates and encodes
them (``greenfuzz.harness.program.ir``), the renderer asks each op's spec for its source,
the model core performs each op with its family's rule and lets families hook into
switching and freeing, and ``greenfuzz.strategies`` draws each family's fragment.  The
families import only :mod:`.base` (and the families they build on), the standard
library, :mod:`.genes` (what they draw with) and ``target`` basics; model types are
imported for type checking only.

How to add a family ``foo``:

1. Write ``harness/families/foo.py``: the op dataclasses (frozen; a block op has a
   ``then`` tuple), one ``OpSpec`` per op type (``names``: the fields that name
   greenlets, ``validate``, ``comment``, ``statement``/``result`` or ``render``,
   ``perform`` for the model, block hooks if it is a block, ``plain`` for plain
   reproducers: a ``PlainSpec`` whose function writes through ``plainwriter``), and
   ``FAMILY = Family("foo", ops=..., draw=...)`` (``draw`` describes ops with
   :mod:`.genes`, imported as ``st``: the ``hypothesis.strategies`` names it has) with
   whatever model hooks (``collecting``, ``switching``, ...), program hooks (``check``,
   ``cleanup``) or strategy decorations (``decorate=Decorations(...)``) it needs.
   Model state goes in ``Family.state`` (the model's ``ext["foo"]``) and, per
   greenlet, in ``MG.ext``; model types are imported under ``TYPE_CHECKING`` only.
   The runtime side, if the ops need new helpers, goes at the end of
   ``harness/target/runtime.py``.
2. Write ``tests/test_foo.py``: the model rules against the real greenlet.

Modules in this package are registered in the order of ``BUILT_IN`` (the order of
``--families``), then any other module found here that defines ``FAMILY``, so step 1
is all it takes; ``register`` adds a family defined elsewhere (tests do).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Tuple

from greenfuzz.harness.families.base import (
    MAIN,
    Bogus,
    Emitter,
    Exc,
    Family,
    Op,
    OpSpec,
    ProgramError,
    Script,
    Scripts,
    Value,
    family_names,
    family_of,
    flatten,
    get_family,
    greenlet_names,
    hooks,
    is_block,
    nested,
    op_comment,
    op_types,
    positions,
    register,
    span,
    spec,
    unregister,
    walk,
)
from greenfuzz.harness.families.base import families as registered

#: The families that come with greenfuzz, in the order they are listed and drawn.
BUILT_IN = ("core", "stack", "frames", "exceptions", "contextvars", "tracing", "threads",
            "finalizers", "concurrent", "gc")


def _load() -> None:
    found = [m.name for m in pkgutil.iter_modules(__path__)
             if m.name not in ("base", "deliveries", "genes", "values", "plainwriter",
                               "exitplain")]
    for name in (*BUILT_IN, *sorted(set(found) - set(BUILT_IN))):
        module = importlib.import_module(f"{__name__}.{name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            register(family)


_load()


def names() -> Tuple[str, ...]:
    """The registered families, in order (what ``--families`` accepts)."""
    return family_names()


__all__ = ["BUILT_IN", "MAIN", "Bogus", "Emitter", "Exc", "Family", "Op", "OpSpec",
           "ProgramError", "Script", "Scripts", "Value", "family_names", "family_of", "flatten",
           "get_family", "greenlet_names", "hooks", "is_block", "names", "nested",
           "op_comment", "op_types", "positions", "register", "registered", "span", "spec",
           "unregister", "walk"]
