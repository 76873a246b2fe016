"""What keeps a greenlet alive, in words: for leak reports."""

from __future__ import annotations

from typing import Dict, List

from greenfuzz.harness.model.core import Model
from greenfuzz.harness.program.ir import Program


def holders(model: Model, name: str) -> List[str]:
    """What keeps greenlet ``name`` alive now, in words (for leak reports)."""
    g = next((m for m in model.spawned if m.name == name), None)
    if g is None or g.gone:
        return []
    out = []
    if model.registry.get(name) is g:
        out.append("the program's registry")
    for other in model.spawned:
        if other.gone:
            continue
        if other.parent is g:
            out.append(f"{other.name}'s parent link")
        if other.hold is g:
            out.append(f"{other.name}'s pending switch")
    if model.current is g:
        out.append("being the current greenlet")
    return out


def explain_alive(program: Program, index: int) -> Dict[str, List[str]]:
    """For the ``alive`` event at ``index`` of the predicted trace: what the model counts
    as holding each greenlet it says still exists (registry, parent links, pending
    switches, being current)."""
    found: Dict[str, List[str]] = {}

    class Explaining(Model):
        def check_alive(self) -> None:
            if len(self.events) == index:
                found.update({name: holders(self, name) for name in self.alive()})
            super().check_alive()

    Explaining(program).run()
    return found
