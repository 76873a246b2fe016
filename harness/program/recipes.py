"""Scale recipes: the small description of a large program.

Hypothesis draws and shrinks a ``Recipe`` (``greenfuzz.strategies.recipes``), ``greenfuzz
scale`` takes one from the command line, and ``harness/target/scale_runtime.py`` expands
it in the target interpreter (``greenfuzz.harness.search.scale`` runs it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

from greenfuzz.harness.target.words import Shape, Via

SHAPES = tuple(map(str, Shape))  # named once, in target/words.py
VIAS = tuple(map(str, Via))
#: Bytes one parked greenlet costs, by how its stack was reached (measured-limits.md):
#: the memory check before a run uses them, with a margin.
PARKED_BYTES = {"python": 6_100, "c": 16_000}
#: Bytes the reference model spends on one live greenlet (shape ``random``).
MODEL_BYTES = 1_500
#: Names a random run holds at once by default: past the 10^5 live greenlets that
#: defects at scale need.
DEFAULT_LIVE = 125_000


@dataclass(frozen=True)
class Recipe:
    """A compact description of a large program (see ``harness/target/scale_runtime.py``)."""

    shape: str
    greenlets: int
    rounds: int = 1
    depth: int = 0
    via: str = "python"
    wave: int = 1000
    sample: int = 1000
    seed: int = 0
    #: Shape ``random`` only (``harness/target/scale_random.py``): top-level operations
    #: (0: five per greenlet) and names held at once (0: ``DEFAULT_LIVE``, at most all).
    operations: int = 0
    live: int = 0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose from {', '.join(SHAPES)}")
        if self.via not in VIAS:
            raise ValueError(f"unknown via {self.via!r}; choose from {', '.join(VIAS)}")
        if self.greenlets < 1 or self.rounds < 0 or self.depth < 0 or self.wave < 1 \
                or self.sample < 1 or self.operations < 0 or self.live < 0:
            raise ValueError("greenlets, wave and sample must be positive; rounds, "
                             "depth, operations and live not negative")
        if self.shape == "random":
            # Filled in here, so that the recipe a run reports is the one it ran.
            if not self.operations:
                object.__setattr__(self, "operations", 5 * self.greenlets)
            object.__setattr__(self, "live", min(self.greenlets, self.live or DEFAULT_LIVE))

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    def peak_bytes(self) -> int:
        """A generous estimate of the memory the run needs at its peak."""
        if self.shape == "random":
            # The target's greenlets and the model's, for the names held and about as
            # many again that parents and pending switches keep.
            return int(2 * self.live * (PARKED_BYTES["python"] + MODEL_BYTES) * 1.3) \
                + (128 << 20)
        live = {"waves": min(self.wave, self.greenlets), "tree": 64}.get(
            self.shape, self.greenlets)
        per = PARKED_BYTES[self.via] + (1_000 * self.depth if self.via == "c" else
                                        100 * self.depth)
        return int(live * per * 1.3) + (64 << 20)
