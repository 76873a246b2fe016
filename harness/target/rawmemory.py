"""Raw-memory measurements for implementations of the greenlet API.

Object counters (``gc``, objgraph) do not see memory that an implementation
allocates outside Python objects: copied C stacks, interpreter data-stack
chunks, C++ bookkeeping.  This module measures the process itself.  Only the
standard library and psutil are used; without psutil the measurements fall back
to RSS from ``/proc/self/statm``.

An *implementation* is any module object with the greenlet API (``greenlet``,
``getcurrent``, ``GreenletExit``, ``error``).

Measurement
-----------
Every sample is taken after :func:`settle`: ``gc.collect()`` (repeated until
nothing more is collected, at most 3 passes) followed by :func:`trim_heap`
(glibc ``malloc_trim(0)``).  Without the trim, heap that was freed stays in RSS
and USS, and every drop of many greenlets would look like a leak.

A :class:`MemorySample` holds three metrics; the checks use one of them
(``metric=``, default ``"uss"``) and record which one in their result:

* ``uss``: psutil ``memory_full_info().uss``, or RSS where USS is unavailable.
  USS also counts the clean pages of shared libraries that no other process
  maps at the moment, so it jumps by several MiB (measured: 4-7 MiB for
  libpython, libstdc++ and libm) whenever another process that uses the same
  libraries starts or exits.  The rule below absorbs those jumps, at the cost of
  a higher threshold in the runs they hit.
* ``anon``: anonymous memory (``Anonymous`` + ``Swap`` in
  ``/proc/self/smaps_rollup``): heap, arenas, mmap'd stacks, where every leak of
  an implementation lands, and unaffected by other processes.  Falls back to
  ``uss`` where smaps_rollup is missing.
* ``rss``: resident set size.

Each sample also records the number of memory maps of the process and
``vm.max_map_count``: freeing many greenlets out of creation order can fragment
the interpreter's per-greenlet data-stack mappings until ``munmap`` silently
fails at the map limit, so memory then stays mapped although nothing leaked.

Leak decision rule (:func:`check_raw_leak`, :func:`judge`)
----------------------------------------------------------
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

from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import gc
import math
import os
import statistics
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, List, Sequence, Tuple

try:  # psutil is a declared dependency; keep the module importable without it.
    import psutil
except ImportError:  # pragma: no cover - exercised only without psutil
    psutil = None  # type: ignore[assignment]

__all__ = [
    "METRICS",
    "LeakVerdict",
    "MemorySample",
    "ParkedFit",
    "check_raw_leak",
    "finish_loop",
    "judge",
    "least_squares",
    "measure_parked",
    "park_and_kill_loop",
    "process_memory",
    "settle",
    "trim_heap",
]

KIB = 1024
MIB = 1024 * 1024

# ---------------------------------------------------------------------------
# Process memory
# ---------------------------------------------------------------------------

_MALLOC_TRIM: Any = None
_MALLOC_TRIM_LOOKED_UP = False


def _malloc_trim() -> Any:
    global _MALLOC_TRIM, _MALLOC_TRIM_LOOKED_UP
    if not _MALLOC_TRIM_LOOKED_UP:
        _MALLOC_TRIM_LOOKED_UP = True
        if sys.platform.startswith("linux"):
            candidates: List[str | None] = [None, ctypes.util.find_library("c"), "libc.so.6"]
            for name in candidates:
                try:
                    fn = ctypes.CDLL(name).malloc_trim
                except (OSError, AttributeError, TypeError):
                    continue
                fn.argtypes = [ctypes.c_size_t]
                fn.restype = ctypes.c_int
                _MALLOC_TRIM = fn
                break
    return _MALLOC_TRIM


def trim_heap() -> bool:
    """Return freed heap memory to the OS with glibc ``malloc_trim(0)``.

    Returns False where ``malloc_trim`` is not available (non-glibc libc,
    macOS, Windows), True when it was called.
    """
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


def settle() -> bool:
    """``gc.collect()`` until nothing is collected (at most 3 passes), then trim.

    Returns what :func:`trim_heap` returned.
    """
    for _ in range(3):
        if gc.collect() == 0:
            break
    return trim_heap()


def _read_max_map_count() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _count_maps() -> int | None:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


_PROCESS: Any = None


def _uss_rss() -> Tuple[int, int, bool]:
    """(USS or RSS, RSS, True when the first value is RSS because USS is unavailable)."""
    global _PROCESS
    if psutil is not None:
        if _PROCESS is None or _PROCESS.pid != os.getpid():
            _PROCESS = psutil.Process()
        try:
            full = _PROCESS.memory_full_info()
            uss = getattr(full, "uss", None)
            if uss is not None:
                return int(uss), int(full.rss), False
            return int(full.rss), int(full.rss), True
        except (psutil.AccessDenied, NotImplementedError, OSError):
            rss = int(_PROCESS.memory_info().rss)
            return rss, rss, True
    try:  # pragma: no cover - only without psutil
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        rss = pages * os.sysconf("SC_PAGE_SIZE")
        return rss, rss, True
    except (OSError, ValueError, IndexError, AttributeError) as exc:  # pragma: no cover
        raise RuntimeError("no way to measure process memory (install psutil)") from exc


def _read_anon() -> int | None:
    """Anonymous memory (resident + swapped) from /proc/self/smaps_rollup, in bytes."""
    total = 0
    found = False
    try:
        with open("/proc/self/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith((b"Anonymous:", b"Swap:")):
                    total += int(line.split()[1]) * 1024
                    found = True
    except (OSError, ValueError, IndexError):
        return None
    return total if found else None


METRICS = ("uss", "anon", "rss")


@dataclass(frozen=True)
class MemorySample:
    """One measurement of this process.

    ``uss`` is the unique set size (psutil), or the RSS where USS is unavailable
    (``uss_is_rss`` is then True).  ``anon`` is the process's anonymous memory
    (``Anonymous`` + ``Swap`` of ``/proc/self/smaps_rollup``): unlike USS it does
    not move when another process maps or unmaps the same shared libraries.
    ``map_count`` is the number of lines in ``/proc/self/maps`` and
    ``max_map_count`` the ``vm.max_map_count`` sysctl.  Fields that cannot be
    read here are None.
    """

    uss: int
    rss: int
    map_count: int | None
    max_map_count: int | None
    anon: int | None = None
    uss_is_rss: bool = False

    def value(self, metric: str = "uss") -> int:
        """The sample's value for ``metric`` (``"uss"``, ``"anon"`` or ``"rss"``)."""
        if metric == "uss":
            return self.uss
        if metric == "rss":
            return self.rss
        if metric == "anon":
            if self.anon is None:
                raise ValueError("anonymous memory is not available in this sample")
            return self.anon
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")

    def maps_near_limit(self, margin: float = 0.1) -> bool:
        """True when the map count is within ``margin`` (a fraction) of the limit."""
        if self.map_count is None or not self.max_map_count:
            return False
        return self.map_count >= (1.0 - margin) * self.max_map_count


def process_memory() -> MemorySample:
    """Measure USS (or RSS), RSS, anonymous memory, the map count and
    ``vm.max_map_count`` now (no gc, no trim: see :func:`settle`)."""
    uss, rss, uss_is_rss = _uss_rss()
    return MemorySample(
        uss=uss,
        rss=rss,
        map_count=_count_maps(),
        max_map_count=_read_max_map_count(),
        anon=_read_anon(),
        uss_is_rss=uss_is_rss,
    )


def _sample() -> MemorySample:
    settle()
    return process_memory()


def _effective_metric(metric: str, sample: MemorySample) -> str:
    """The metric actually measured: USS falls back to RSS, anon to USS."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    if metric == "anon" and sample.anon is None:
        metric = "uss"
    if metric == "uss" and sample.uss_is_rss:
        return "rss"
    return metric


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


def _map_problem(samples: Sequence[MemorySample], margin: float) -> str | None:
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
    """Result of :func:`check_raw_leak` / :func:`judge`; the rule is in the module docstring."""

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


def judge(
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
    effective = _effective_metric(metric, samples[0])
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
    floor_bytes: float = 64.0,
    resolution_bytes: float = 64 * KIB,
    noise_factor: float = 3.0,
    min_rising_fraction: float = 0.75,
    map_margin: float = 0.1,
) -> LeakVerdict:
    """Run ``workload(per_batch)`` repeatedly and decide whether memory leaks.

    The exact rule is in the module docstring.  ``workload(n)`` must perform
    ``n`` iterations and leave nothing alive that it does not mean to leak.
    ``metric`` is ``"uss"`` (default), ``"anon"`` or ``"rss"``.
    """
    if per_batch < 1:
        raise ValueError("per_batch must be >= 1")
    if batches < 3:
        raise ValueError("batches must be >= 3 (the noise estimate needs 2+ deltas)")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")

    warm: List[MemorySample] = []
    for _ in range(warmup):
        workload(per_batch)
        warm.append(_sample())

    trimmed = settle()
    samples: List[MemorySample] = [process_memory()]
    for _ in range(batches):
        workload(per_batch)
        samples.append(_sample())

    return judge(
        samples,
        per_batch=per_batch,
        warmup_samples=warm,
        metric=metric,
        floor_bytes=floor_bytes,
        resolution_bytes=resolution_bytes,
        noise_factor=noise_factor,
        min_rising_fraction=min_rising_fraction,
        map_margin=map_margin,
        trimmed=trimmed,
    )


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

_VIAS = ("python", "c")


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
        raise ValueError(f"via must be one of {_VIAS}, not {via!r}")
    state = _ParkState(impl)
    namespace: dict[str, Any] = {"__builtins__": builtins, "_STATE": state}
    for template in (_park_leaf, _park_python, _park_c):
        namespace[template.__name__] = types.FunctionType(
            template.__code__, namespace, template.__name__
        )
    if depth == 0:
        return namespace["_park_leaf"], (0,), state
    return namespace["_park_python" if via == "python" else "_park_c"], (depth,), state


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
        self.impl = impl
        self.depth = depth
        self.via = via
        self.group = group
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
    peak_map_counts: Tuple[int | None, ...]
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
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    greenlet = impl.greenlet
    run, args, state = _make_parker(impl, depth, via)
    deltas: List[int] = []
    residuals: List[int] = []
    peaks: List[int | None] = []
    seen: List[MemorySample] = []
    effective = _effective_metric(metric, process_memory())
    for n in counts:
        base = _sample()
        parked: List[Any] = [None] * n
        for i in range(n):
            g = greenlet(run)
            g.switch(*args)
            parked[i] = g
        g = None
        full = _sample()
        for i in range(n):  # creation order; `del parked` would free from the end
            parked[i] = None
        del parked
        after = _sample()
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
