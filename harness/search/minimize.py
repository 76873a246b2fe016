"""Simplifying a failing program after Hypothesis has shrunk it.

Hypothesis shrinks the choices that built a program; it cannot drop a greenlet whose
name a later greenlet's name depends on, nor an op whose removal would change what
later draws mean.  Working on the program itself, this pass removes whole greenlets and
single ops while the failure stays the same, then renames the survivors ``g1, g2, ...``
in order, so that a reproducer holds only what the bug needs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, List, Optional, Tuple

from greenfuzz.harness.model import ModelError
from greenfuzz.harness.program.ir import (
    BLOCKS,
    MAIN,
    REFERENCING_FIELDS,
    Op,
    Program,
    ProgramError,
    Spawn,
    flatten,
    span,
    walk,
)

Script = Tuple[Op, ...]


def _names(op: Op) -> List[str]:
    """Every greenlet ``op`` names, those of the ops nested in it included."""
    out = []
    for one in walk((op,)):
        for fname in REFERENCING_FIELDS.get(type(one), ()):
            ref = getattr(one, fname)
            if isinstance(ref, str):
                out.append(ref)
        if isinstance(one, Spawn):
            out.append(one.name)
    return out


def _rebuild(program: Program, scripts: Dict[str, Script]) -> Optional[Program]:
    candidate = Program(
        main=scripts[MAIN],
        greenlets=tuple((n, scripts[n]) for n, _ in program.greenlets if n in scripts),
        meta=program.meta,
    )
    try:
        candidate.validate()
    except ProgramError:
        return None
    return candidate


def without_greenlet(program: Program, name: str) -> Optional[Program]:
    """The program with greenlet ``name``, its spawn and every op naming it removed."""
    scripts = {
        owner: tuple(op for op in script if name not in _names(op))
        for owner, script in program.scripts()
        if owner != name
    }
    return _rebuild(program, scripts)


def _without(script: Script, index: int) -> Script:
    """``script`` without the op at ``index`` in ``flatten(script)`` (and its block)."""
    out: List[Op] = []
    at = 0  # the flat index of ``op``
    for op in script:
        if at < index < at + span(op):
            out.append(replace(op, then=_without(op.then, index - at - 1)))
        elif at != index:
            out.append(op)
        at += span(op)
    return tuple(out)


def without_op(program: Program, owner: str, index: int) -> Optional[Program]:
    """The program without op ``index`` (in ``flatten`` order, so nested ones too)."""
    script = program.script(owner)
    flat = flatten(script)
    if any(isinstance(op, Spawn) for op in walk(flat[index:index + 1])):
        return None  # removing a spawn is removing its greenlet
    scripts = dict(program.scripts())
    scripts[owner] = _without(script, index)
    return _rebuild(program, scripts)


def renamed(program: Program) -> Program:
    """Greenlets renamed ``g1, g2, ...`` in their order in the program."""
    mapping = {old: f"g{i}" for i, old in enumerate(program.names, 1)}
    mapping[MAIN] = MAIN

    def fix(op: Op) -> Op:
        changes = {}
        for fname in REFERENCING_FIELDS.get(type(op), ()):
            ref = getattr(op, fname)
            if isinstance(ref, str):
                changes[fname] = mapping[ref]
        if isinstance(op, Spawn):
            changes["name"] = mapping[op.name]
        if isinstance(op, BLOCKS):
            changes["then"] = tuple(fix(o) for o in op.then)
        return type(op)(**{**op.__dict__, **changes}) if changes else op

    return Program(
        main=tuple(fix(op) for op in program.main),
        greenlets=tuple((mapping[n], tuple(fix(op) for op in s)) for n, s in program.greenlets),
        meta=program.meta,
    )


def simplify(program: Program, still_fails: Callable[[Program], bool],
             max_attempts: int = 300) -> Program:
    """The smallest program reachable by removals that ``still_fails``."""
    attempts = 0

    def accept(candidate: Optional[Program]) -> bool:
        nonlocal attempts
        if candidate is None or attempts >= max_attempts:
            return False
        attempts += 1
        try:
            return still_fails(candidate)
        except ModelError:
            # Removing an op can make a program the model leaves out on purpose
            # (``model.Unsupported``: a finally block that switches while it is killed,
            # say): no candidate.
            return False

    changed = True
    while changed and attempts < max_attempts:
        changed = False
        for name in reversed(program.names):
            candidate = without_greenlet(program, name)
            if accept(candidate):
                program, changed = candidate, True  # type: ignore[assignment]
        for owner, script in program.scripts():
            script = flatten(script)
            index = len(script) - 1
            while index >= 0:
                candidate = without_op(program, owner, index)
                if accept(candidate):
                    program, changed = candidate, True  # type: ignore[assignment]
                    script = flatten(program.script(owner))
                index = min(index - 1, len(script) - 1)
    candidate = renamed(program)
    if candidate != program and accept(candidate):
        program = candidate
    return program
