"""Hypothesis strategies for scale recipes (``greenfuzz.harness.program.recipes.Recipe``).

Hypothesis cannot draw a million operations one by one (about 180 µs each); it draws a
recipe of a few integers that ``harness/target/scale_runtime.py`` expands deterministically, so
shrinking works on the recipe: fewer greenlets, fewer rounds, shallower stacks, Python
calls rather than C.
"""

from __future__ import annotations

from hypothesis import strategies as st

from greenfuzz.harness.program.recipes import SHAPES, VIAS, Recipe


def recipes(max_greenlets: int = 2_000, max_rounds: int = 3, max_depth: int = 20,
            shapes: tuple = SHAPES) -> st.SearchStrategy[Recipe]:
    """Recipes of up to ``max_greenlets`` greenlets (each shrinks towards the simplest)."""
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
