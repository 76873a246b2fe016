"""Hypothesis strategies for scale recipes (``greenfuzz.harness.program.recipes.Recipe``).

Hypothesis cannot draw a million operations one by one (about 180 µs each); it draws a
recipe of a few integers that ``harness/target/scale_runtime.py`` expands deterministically, so
shrinking works on the recipe: fewer greenlets, fewer rounds, shallower stacks, Python
calls rather than C.  The random shape (``harness/target/scale_random.py``) is drawn the
same way: a seed and a few sizes, its operations expanded on both sides of the run.
"""

from __future__ import annotations

from hypothesis import strategies as st

from greenfuzz.harness.program.recipes import SHAPES, VIAS, Recipe


def random_recipes(max_greenlets: int = 2_000, max_depth: int = 20
                   ) -> st.SearchStrategy[Recipe]:
    """Random-shape recipes (``harness/target/scale_random.py``): a seed, a greenlet cap,
    an operation budget and the names held at once; each shrinks towards fewer."""
    return st.builds(
        lambda greenlets, per, live, depth, seed: Recipe(
            "random", greenlets, depth=depth, seed=seed, operations=greenlets * per,
            live=max(1, greenlets * live // 8)),
        greenlets=st.integers(min_value=1, max_value=max_greenlets),
        per=st.integers(min_value=1, max_value=8),
        live=st.integers(min_value=1, max_value=8),
        depth=st.integers(min_value=0, max_value=max_depth),
        seed=st.integers(min_value=0, max_value=2**16 - 1),
    )


def recipes(max_greenlets: int = 2_000, max_rounds: int = 3, max_depth: int = 20,
            shapes: tuple = SHAPES) -> st.SearchStrategy[Recipe]:
    """Recipes of up to ``max_greenlets`` greenlets (each shrinks towards the simplest);
    the random shape among them draws its own settings (``random_recipes``)."""
    fixed = tuple(s for s in shapes if s != "random")
    drawn = [] if not fixed else [_fixed(max_greenlets, max_rounds, max_depth, fixed)]
    if "random" in shapes:
        drawn.append(random_recipes(max_greenlets, max_depth))
    return st.one_of(drawn)


def _fixed(max_greenlets: int, max_rounds: int, max_depth: int, shapes: tuple
           ) -> st.SearchStrategy[Recipe]:
    return st.builds(
        Recipe,
        shape=st.sampled_from(shapes),
        greenlets=st.integers(min_value=1, max_value=max_greenlets),
        rounds=st.integers(min_value=0, max_value=max_rounds),
        depth=st.integers(min_value=0, max_value=max_depth),
        via=st.sampled_from(VIAS),
        wave=st.integers(min_value=1, max_value=max(1, max_greenlets // 4)),
        sample=st.integers(min_value=1, max_value=100),
        seed=st.integers(min_value=0, max_value=2**16 - 1),
    )
