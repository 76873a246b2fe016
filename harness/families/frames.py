"""Family ``frames``: a suspended greenlet's stack as Python sees it (``gr_frame`` and its
``f_back`` chain), recursions included."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Tuple

from greenfuzz.harness.families import genes as st
from greenfuzz.harness.families import plainwriter as pw
from greenfuzz.harness.families.base import (
    MAIN,
    Decorations,
    Drawing,
    Family,
    Op,
    OpSpec,
    PlainSpec,
    identifier,
    ref,
)
from greenfuzz.harness.families.base import spec as spec_of
from greenfuzz.harness.families.core import Switch
from greenfuzz.harness.families.deliveries import State, Unsupported
from greenfuzz.harness.families.stack import Recurse, deep_start, recursions
from greenfuzz.harness.target.runtime import VIA_FRAMES

if TYPE_CHECKING:
    from greenfuzz.harness.model.core import Model
    from greenfuzz.harness.model.state import MG


@dataclass(frozen=True)
class Frames:
    """Record the functions on ``target``'s stack: ``gr_frame`` and its ``f_back`` chain,
    innermost first, down to ``run_<target>`` (None when ``gr_frame`` is None).

    Only the program's own functions are listed (``runtime.frame_names``), so that an
    implementation's Python-level ``switch`` or bootstrap frames do not count.
    """

    target: str


def stack_of(g: MG) -> Tuple[str, ...]:
    """The program functions on a suspended greenlet's stack, innermost first."""
    names = [f"run_{identifier(g.name)}"] if g.run_frame else []
    for level in g.levels:
        op = g.script[level.start]
        if not isinstance(op, Recurse):
            continue  # other blocks run inline
        function = f"recurse_{g.name}_{level.start}"
        names.append(function)
        for _ in range(op.depth):
            names += [*reversed(VIA_FRAMES[op.via]), function]
    return tuple(reversed(names))


def perform(m: Model, g: MG, op: Frames) -> None:
    """api docs: "gr_frame: The frame that was active in this greenlet when it most
    recently called some_other_greenlet.switch() ... The remainder of the greenlet's
    stack can be accessed by following the frame object's f_back attributes.
    gr_frame is non-None only for suspended greenlets".  A suspended greenlet is
    always inside a switch()/throw() op: at the bottom level of each recursion it
    is in, below its ``run``."""
    t = m.lookup(op.target)
    assert t is not None
    if t.name in m.speaking:
        raise Unsupported(f"the stack of {t.name}, suspended in another script's ops")
    if t is m.main and m.finished:
        # Its script is over: suspended in the runner's teardown, whose frames below
        # run_main's caller differ between runners (in-process, worker, reproducer).
        raise Unsupported("the stack of main, suspended in the teardown")
    m.rec(g.name, g.pc, "frames", stack_of(t) if t.state is State.SUSPENDED else None)
    g.pc += 1


def _draw(targets: Tuple[str, ...], families: Tuple[str, ...], terminal: bool,
          ops: Callable) -> List[st.SearchStrategy]:
    return [st.builds(Frames, st.sampled_from(targets))] * 2


_frames_after = st.integers(min_value=0, max_value=2).map(lambda n: n == 2)


def _after_kick(d: Drawing, name: str, main: List[Op], at: int, own: List[Op]) -> None:
    """Park it (switching back to main, maybe from deep down), then look at its stack
    while it is suspended there."""
    if not d.draw(_frames_after):
        return
    park: Op = Switch(MAIN)
    if "stack" in d.families and d.draw(deep_start):
        park = d.draw(recursions(d.targets, d.families, d.ops, (park,)))
    end = len(own)
    while end and spec_of(own[end - 1]).ends_script:
        end -= 1
    own.insert(d.draw(st.integers(min_value=0, max_value=end)), park)
    main.insert(at + 1, Frames(name))



# -- plain reproducers (``plainwriter``) -------------------------------------------

pw.define_helper('stack', '''
def stack(g, bottom):
    """The functions of this file on g's suspended stack (gr_frame, f_back...), innermost
    first, down to ``bottom``; None when g has no frame."""
    frame, found = g.gr_frame, []
    if frame is None:
        return None
    while frame is not None:
        if frame.f_code.co_filename == __file__ and not frame.f_code.co_name.endswith("tracer"):
            found.append(frame.f_code.co_name)
            if found[-1] == bottom:
                break
        frame = frame.f_back
    return tuple(found)
''')


def _plain_frames(w: pw.Writer, who: str, pc: int, op: Frames) -> pw.Rendered:
    w.need("stack")
    bottom = "<module>" if op.target == MAIN else f"run_{w.ref(op.target)}"
    for i, kind, payload in w.events(who, pc):
        if kind == "frames" and isinstance(payload, tuple):
            renamed = tuple("<module>" if n == "run_main" else n for n in payload)
            w.at[(who, pc)] = [(i, kind, renamed)]
    return pw.recorded(w, who, pc, "frames", f"the functions on {op.target}'s stack",
                       f"stack({w.ref(op.target)}, {bottom!r})")



FAMILY = Family(
    name="frames",
    ops=(OpSpec(Frames, plain=PlainSpec(_plain_frames),
               names=("target",), result="frames", perform=perform,
                comment=lambda op: f"list the functions on {op.target}'s stack "
                "(gr_frame, f_back...)",
                statement=lambda op: f"r = T.frame_names({ref(op.target)}.gr_frame, "
                f"'run_{identifier(op.target)}')"),),
    draw=_draw,
    decorate=Decorations(after_kick=_after_kick),
)
