"""The raw-memory leak rule, and bytes per parked greenlet.

Object counters do not see memory an implementation allocates outside Python objects,
so these checks measure the process (``memory``: see there how, and what the metrics
``uss``, ``anon`` and ``rss`` mean).  Standard library only (psutil where installed),
Python 3.9+: pasted into raw-memory probes and reproducers, and loaded by path by
``greenfuzz profile``.

An *implementation* is any module object with the greenlet API (``greenlet``,
``getcurrent``, ``GreenletExit``, ``error``).

Leak decision rule (:func:`check_raw_leak`, :func:`judge_growth`)
-----------------------------------------------------------------
With ``P = per_batch`` iterations per batch, ``B = batches`` and ``u`` the
chosen metric:

1. Run ``warmup`` batches of ``workload(P)`` (default 2), settling and sampling
   after each; those samples are kept for the map check only and play no part
   in the fit.
2. Settle, take the baseline sample ``u_0``; then for ``i = 1..B`` (default 8)
   run ``workload(P)``, settle and take sample ``u_i``.
3. ``bytes_per_iteration`` is the least-squares slope of ``u_i`` against the
   cumulative iteration count ``i * P`` (``i = 0..B``).
4. Batch deltas ``d_i = u_i - u_(i-1)`` (``i = 1..B``).
5. ``floor = max(floor_bytes, resolution_bytes / P)`` bytes per iteration
   (defaults: 64 bytes per iteration, and 64 KiB per batch, the resolution of a
   page-granular metric fed by allocators that grab memory in chunks).
   ``noise = noise_factor * stdev(d) / (sqrt(B) * P)`` (sample standard
   deviation; ``noise_factor`` 3): three standard errors of the mean growth per
   iteration, measured on this run.  ``threshold = max(floor, noise)``.
6. ``rising`` is the number of batches with ``d_i > floor * P``.
7. The run is *unreliable* when any sample (warm-up samples included) has a map
   count of at least ``(1 - map_margin) * vm.max_map_count`` (``map_margin``
   0.1).  An unreliable run is never reported as a leak; ``reason`` says why.
8. ``leaked`` is true exactly when the run is reliable, ``bytes_per_iteration >
   threshold`` and ``rising >= ceil(min_rising_fraction * B)`` (0.75, i.e. 6 of
   8: most batches grew by more than the floor).

A single jump (a new arena, a larger list buffer, a shared library page that
became private) inflates the spread of the deltas and moves only one of them,
so it fails both the noise test and the rising test; a real leak moves every
batch by about the same amount.  Choose ``per_batch`` so that the smallest leak
of interest times ``per_batch`` is well above the jumps: with ``per_batch=2000``
a steady leak of 64 bytes per iteration or more is reported with ``anon``, and
one of about 2 KiB or more with ``uss`` even while other processes churn.

Bytes per parked greenlet (:func:`measure_parked`)
--------------------------------------------------
For each count ``N``: settle and take a baseline, park ``N`` greenlets (each
suspended back to its creator at the requested depth), settle and sample, then
drop them in creation order (so freed data-stack mappings merge again), settle
and sample once more.  The per-greenlet slope and the fixed cost are fitted by
least squares over ``(N, u - baseline)``.
"""

import builtins
import math
import statistics
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .memory import (
    KIB,
    MIB,
    MemorySample,
    check_metric,
    effective_metric,
    process_memory,
    settle,
    settled_sample,
)
from .words import Via


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> Tuple[float, float]:
    """Ordinary least squares fit ``y = slope * x + intercept``; returns (slope, intercept).

    With fewer than two distinct x values the line goes through the origin and
    the mean point (``intercept`` 0), or is flat when every x is 0.
    """
    if len(xs) != len(ys) or not xs:
        raise ValueError("least_squares needs two sequences of the same, non-zero length")
    n = len(xs)
    mx = math.fsum(xs) / n
    my = math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0.0:
        return (my / mx if mx else 0.0), (0.0 if mx else my)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    return slope, my - slope * mx


def _map_problem(samples: Sequence[MemorySample], margin: float) -> Optional[str]:
    for s in samples:
        if s.maps_near_limit(margin):
            return (
                f"memory map count {s.map_count} is within {margin:.0%} of "
                f"vm.max_map_count={s.max_map_count}: munmap may fail silently, so "
                "freed memory can stay mapped without any leak (free greenlets in "
                "creation order, or raise the limit with sysctl vm.max_map_count)"
            )
    return None


# ---------------------------------------------------------------------------
# Leak check
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LeakVerdict:
    """Result of :func:`check_raw_leak` / :func:`judge_growth`: the rule is in the module
    docstring."""

    leaked: bool
    bytes_per_iteration: float
    threshold: float
    floor: float
    noise: float
    rising: int
    rising_needed: int
    per_batch: int
    samples: Tuple[MemorySample, ...]
    warmup_samples: Tuple[MemorySample, ...] = ()
    metric: str = "uss"
    reliable: bool = True
    reason: str = ""
    trimmed: bool = True

    @property
    def values(self) -> Tuple[int, ...]:
        """The measured metric of each sample (baseline first), in bytes."""
        return tuple(s.value(self.metric) for s in self.samples)

    @property
    def deltas(self) -> Tuple[int, ...]:
        """Growth of the metric over each measured batch, in bytes."""
        v = self.values
        return tuple(b - a for a, b in zip(v, v[1:]))

    @property
    def total_growth(self) -> int:
        v = self.values
        return v[-1] - v[0] if v else 0

    def summary(self) -> str:
        if not self.reliable:
            head = "UNRELIABLE"
        elif self.leaked:
            head = "LEAK"
        else:
            head = "no leak"
        batches = len(self.samples) - 1
        line = (
            f"{head}: {self.bytes_per_iteration:+.1f} B/iteration "
            f"(threshold {self.threshold:.1f} = max(floor {self.floor:.1f}, "
            f"noise {self.noise:.1f})), {self.rising}/{batches} batches rising "
            f"(need {self.rising_needed}), {batches}x{self.per_batch} iterations, "
            f"{self.metric} {self.total_growth / MIB:+.2f} MiB"
        )
        if not self.trimmed:
            line += ", heap not trimmed (no malloc_trim)"
        if self.reason:
            line += f"; {self.reason}"
        return line


def judge_growth(
    samples: Sequence[MemorySample],
    *,
    per_batch: int,
    warmup_samples: Sequence[MemorySample] = (),
    metric: str = "uss",
    floor_bytes: float = 64.0,
    resolution_bytes: float = 64 * KIB,
    noise_factor: float = 3.0,
    min_rising_fraction: float = 0.75,
    map_margin: float = 0.1,
    trimmed: bool = True,
) -> LeakVerdict:
    """Apply the leak decision rule to ``samples`` (baseline first, then one
    sample after each measured batch of ``per_batch`` iterations)."""
    if per_batch < 1:
        raise ValueError("per_batch must be >= 1")
    if len(samples) < 4:
        raise ValueError("need a baseline and at least 3 batch samples")
    effective = effective_metric(metric, samples[0])
    batches = len(samples) - 1
    ys = [float(s.value(effective)) for s in samples]
    xs = [float(i * per_batch) for i in range(batches + 1)]
    slope, _ = least_squares(xs, ys)
    deltas = [b - a for a, b in zip(ys, ys[1:])]
    floor = max(float(floor_bytes), float(resolution_bytes) / per_batch)
    noise = noise_factor * statistics.stdev(deltas) / (math.sqrt(batches) * per_batch)
    threshold = max(floor, noise)
    rising = sum(1 for d in deltas if d > floor * per_batch)
    rising_needed = math.ceil(min_rising_fraction * batches)
    problem = _map_problem(list(warmup_samples) + list(samples), map_margin)
    reliable = problem is None
    return LeakVerdict(
        leaked=reliable and slope > threshold and rising >= rising_needed,
        bytes_per_iteration=slope,
        threshold=threshold,
        floor=floor,
        noise=noise,
        rising=rising,
        rising_needed=rising_needed,
        per_batch=per_batch,
        samples=tuple(samples),
        warmup_samples=tuple(warmup_samples),
        metric=effective,
        reliable=reliable,
        reason=problem or "",
        trimmed=trimmed,
    )


def check_raw_leak(
    workload: Callable[[int], None],
    *,
    per_batch: int,
    warmup: int = 2,
    batches: int = 8,
    metric: str = "uss",
    cap_bytes: Optional[int] = None,
    **rule: Any,
) -> LeakVerdict:
    """Run ``workload(per_batch)`` repeatedly and decide whether memory leaks.

    The exact rule is in the module docstring; ``rule`` holds its other settings
    (``floor_bytes``, ``noise_factor``...: see :func:`judge_growth`).  ``workload(n)``
    must perform ``n`` iterations and leave nothing alive that it does not mean to leak.
    ``metric`` is ``"uss"`` (default), ``"anon"`` or ``"rss"``.  With ``cap_bytes``, the
    measured batches stop early (after 3 at least) once RSS has grown by more: a leak that
    large is not in doubt, and the process may have a memory limit.
    """
    if per_batch < 1:
        raise ValueError("per_batch must be >= 1")
    if batches < 3:
        raise ValueError("batches must be >= 3 (the noise estimate needs 2+ deltas)")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    check_metric(metric)

    warm: List[MemorySample] = []
    for _ in range(warmup):
        workload(per_batch)
        warm.append(settled_sample())

    trimmed = settle()
    samples: List[MemorySample] = [process_memory()]
    for _ in range(batches):
        workload(per_batch)
        samples.append(settled_sample())
        if cap_bytes is not None and len(samples) >= 4 \
                and samples[-1].rss - samples[0].rss > cap_bytes:
            break

    return judge_growth(samples, per_batch=per_batch, warmup_samples=warm, metric=metric,
                        trimmed=trimmed, **rule)


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

_VIAS = tuple(Via)


def _impl_name(impl: Any) -> str:
    return str(getattr(impl, "__name__", type(impl).__name__))


class _ParkState:
    """What a parked greenlet needs, passed as an argument (see _make_parker)."""

    __slots__ = ("exits", "getcurrent", "greenlet_exit")

    def __init__(self, impl: Any) -> None:
        self.getcurrent = impl.getcurrent
        self.greenlet_exit = impl.GreenletExit
        self.exits = 0


# The parking functions are templates: _make_parker copies them with a fresh
# globals dict per parker (so each has its own _STATE), keeping them plain
# functions without free variables, with one int argument, and with the only try
# block in the leaf.  On CPython <= 3.10 a closure, an extra argument or a try
# block makes every Python level bigger (C stack or frame object), so the
# harness would measure its own overhead instead of what a hand-written
# ``def f(k): ... main.switch()`` costs (measured on 3.9 with closures: +12 % at
# depth 0, +20 % at 10 levels through C).
_STATE: Any = None


def _park_leaf(k: int) -> Any:
    try:
        return _STATE.getcurrent().parent.switch()
    except _STATE.greenlet_exit:
        _STATE.exits += 1
        raise


def _park_python(k: int) -> Any:
    if k > 1:
        return _park_python(k - 1)
    return _park_leaf(0)


def _park_c(k: int) -> Any:
    # Python -> C (list/map) -> Python: every level puts C frames on the C
    # stack, which greenlet must copy to the heap when it parks.
    if k > 1:
        return list(map(_park_c, [k - 1]))
    return list(map(_park_leaf, [0]))


def _make_parker(
    impl: Any, depth: int, via: str
) -> Tuple[Callable[..., Any], Tuple[Any, ...], _ParkState]:
    """``(run, args, state)``: ``greenlet(run).switch(*args)`` recurses ``depth``
    levels and then switches back to its parent (the greenlet that started it).
    A parked greenlet holds ``depth + 1`` Python frames, like a hand-written
    ``def f(k): ... main.switch()`` started with ``switch(depth)``.  The
    GreenletExit it receives when dropped is counted in ``state.exits``."""
    if depth < 0:
        raise ValueError("depth must be >= 0")
    if via not in _VIAS:
        raise ValueError(f"via must be one of {', '.join(_VIAS)}, not {via!r}")
    state = _ParkState(impl)
    namespace: Dict[str, Any] = {"__builtins__": builtins, "_STATE": state}
    for template in (_park_leaf, _park_python, _park_c):
        namespace[template.__name__] = types.FunctionType(
            template.__code__, namespace, template.__name__
        )
    if depth == 0:
        return namespace["_park_leaf"], (0,), state
    return namespace["_park_python" if via == Via.PYTHON else "_park_c"], (depth,), state


class _FinishLoop:
    """Create a greenlet, switch into it, let it finish; ``n`` times."""

    def __init__(self, impl: Any) -> None:
        self.impl = impl
        self.iterations = 0
        self.finished = 0

    def __call__(self, n: int) -> None:
        greenlet = self.impl.greenlet
        done = [0]

        def run() -> None:
            done[0] += 1

        for _ in range(n):
            greenlet(run).switch()
        self.iterations += n
        self.finished += done[0]

    def __repr__(self) -> str:
        return f"finish_loop({_impl_name(self.impl)})"


class _ParkAndKillLoop:
    """Park greenlets at a depth, then drop them in creation order; ``n`` times."""

    def __init__(self, impl: Any, depth: int, via: str, group: int) -> None:
        if group < 1:
            raise ValueError("group must be >= 1")
        self.impl, self.depth, self.via, self.group = impl, depth, via, group
        self.iterations = 0
        self._run, self._args, self._state = _make_parker(impl, depth, via)

    @property
    def exits(self) -> int:
        """How many parked greenlets received GreenletExit when dropped."""
        return self._state.exits

    def __call__(self, n: int) -> None:
        greenlet = self.impl.greenlet
        run, args = self._run, self._args
        parked: List[Any] = [None] * min(self.group, max(n, 1))
        done = 0
        while done < n:
            k = min(self.group, n - done)
            for i in range(k):
                g = greenlet(run)
                g.switch(*args)
                parked[i] = g
            g = None
            for i in range(k):  # drop in creation order
                parked[i] = None
            done += k
        self.iterations += n

    def __repr__(self) -> str:
        return (
            f"park_and_kill_loop({_impl_name(self.impl)}, depth={self.depth}, "
            f"via={self.via!r}, group={self.group})"
        )


def finish_loop(impl: Any) -> Callable[[int], None]:
    """Workload: ``n`` times create a greenlet with a Python ``run``, switch
    into it and let it finish.  The returned callable counts ``iterations``
    and ``finished`` runs."""
    return _FinishLoop(impl)


def park_and_kill_loop(
    impl: Any, depth: int = 0, via: str = "python", *, group: int = 64
) -> Callable[[int], None]:
    """Workload: ``n`` greenlets that recurse ``depth`` levels and switch back
    to their creator, parked ``group`` at a time and then dropped in creation
    order, so each one receives GreenletExit where it is suspended.

    ``via='python'`` recurses in plain Python (on CPython 3.11+ that does not
    touch the C stack); ``via='c'`` recurses through ``list(map(f, [x]))`` so
    every level also puts C frames on the stack.  The returned callable counts
    ``iterations`` and ``exits`` (GreenletExit received).
    """
    return _ParkAndKillLoop(impl, depth, via, group)


# ---------------------------------------------------------------------------
# Bytes per parked greenlet
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParkedFit:
    """Result of :func:`measure_parked`.

    ``deltas[i]`` is the metric with ``counts[i]`` greenlets parked minus the
    baseline taken just before parking them; ``residuals[i]`` is the same after
    they were dropped again.  ``slope`` is bytes per parked greenlet,
    ``intercept`` the fixed cost, both by least squares.
    """

    impl: str
    depth: int
    via: str
    counts: Tuple[int, ...]
    deltas: Tuple[int, ...]
    residuals: Tuple[int, ...]
    peak_map_counts: Tuple[Optional[int], ...]
    slope: float
    intercept: float
    parked: int
    exits: int
    reliable: bool = True
    reason: str = ""
    metric: str = "uss"

    @property
    def points(self) -> Tuple[Tuple[int, int], ...]:
        return tuple(zip(self.counts, self.deltas))

    @property
    def per_greenlet(self) -> Tuple[float, ...]:
        """Each point's delta divided by its count (no fixed-cost correction)."""
        return tuple(d / n if n else 0.0 for n, d in self.points)

    def exceeds(self, budget_bytes: float) -> bool:
        """True when the fitted cost per parked greenlet is above the budget."""
        return self.slope > budget_bytes

    def summary(self) -> str:
        pts = ", ".join(f"{n}:{d / MIB:+.1f}MiB" for n, d in self.points)
        line = (
            f"{self.impl} parked depth={self.depth} via={self.via}: "
            f"{self.slope:.0f} B/greenlet + {self.intercept / KIB:.0f} KiB fixed "
            f"({self.metric}; {pts}); GreenletExit {self.exits}/{self.parked}"
        )
        if not self.reliable:
            line += f"; UNRELIABLE: {self.reason}"
        return line


def measure_parked(
    impl: Any,
    counts: Sequence[int],
    depth: int = 0,
    via: str = "python",
    *,
    metric: str = "uss",
    map_margin: float = 0.1,
) -> ParkedFit:
    """Bytes per parked greenlet, fitted over several counts (see module docstring).

    ``metric`` is ``"uss"`` (default), ``"anon"`` or ``"rss"``.  A single count
    gives a line through the origin (``intercept`` 0).
    """
    counts = tuple(int(n) for n in counts)
    if not counts or any(n < 1 for n in counts):
        raise ValueError("counts must be a non-empty sequence of positive integers")
    check_metric(metric)
    greenlet = impl.greenlet
    run, args, state = _make_parker(impl, depth, via)
    deltas: List[int] = []
    residuals: List[int] = []
    peaks: List[Optional[int]] = []
    seen: List[MemorySample] = []
    effective = effective_metric(metric, process_memory())
    for n in counts:
        base = settled_sample()
        parked: List[Any] = [None] * n
        for i in range(n):
            g = greenlet(run)
            g.switch(*args)
            parked[i] = g
        g = None
        full = settled_sample()
        for i in range(n):  # creation order; `del parked` would free from the end
            parked[i] = None
        del parked
        after = settled_sample()
        deltas.append(full.value(effective) - base.value(effective))
        residuals.append(after.value(effective) - base.value(effective))
        peaks.append(full.map_count)
        seen.extend((base, full, after))
    slope, intercept = least_squares([float(n) for n in counts], [float(d) for d in deltas])
    problem = _map_problem(seen, map_margin)
    return ParkedFit(
        impl=_impl_name(impl),
        depth=depth,
        via=via,
        counts=counts,
        deltas=tuple(deltas),
        residuals=tuple(residuals),
        peak_map_counts=tuple(peaks),
        slope=slope,
        intercept=intercept,
        parked=sum(counts),
        exits=state.exits,
        reliable=problem is None,
        reason=problem or "",
        metric=effective,
    )
