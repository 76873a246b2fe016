"""Measuring this process's memory: RSS, USS, anonymous memory, memory maps.

Object counters (``gc``, objgraph) do not see memory that an implementation allocates
outside Python objects: copied C stacks, interpreter data-stack chunks, C++ bookkeeping.
This module measures the process itself, for the raw-memory leak rule (``rawmemory``),
the probes next to the implementation (``memprobe``) and the scale runs
(``scale_runtime``).  Standard library only, plus psutil where it is installed (without
it, RSS from ``/proc/self/statm``); Python 3.9+.

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
"""

import ctypes
import ctypes.util
import gc
import os
import sys
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .words import Metric

KIB = 1024
MIB = 1024 * 1024

_MALLOC_TRIM: Any = None
_MALLOC_TRIM_LOOKED_UP = False


def _malloc_trim() -> Any:
    global _MALLOC_TRIM, _MALLOC_TRIM_LOOKED_UP
    if not _MALLOC_TRIM_LOOKED_UP:
        _MALLOC_TRIM_LOOKED_UP = True
        if sys.platform.startswith("linux"):
            candidates: List[Optional[str]] = [None, ctypes.util.find_library("c"), "libc.so.6"]
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


def _read_max_map_count() -> Optional[int]:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _count_maps() -> Optional[int]:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def rss_bytes() -> int:
    """Resident set size from ``/proc/self/statm`` (0 where there is none): cheap enough
    for progress lines."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def peak_rss_bytes() -> int:
    """The most resident memory this process has had (``getrusage``), in bytes."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


_PROCESS: Any = None


def _uss_rss() -> Tuple[int, int, bool]:
    """(USS or RSS, RSS, True when the first value is RSS because USS is unavailable)."""
    global _PROCESS
    try:  # a declared dependency, imported only here: scale runs need none of it
        import psutil
    except ImportError:  # pragma: no cover - exercised only without psutil
        psutil = None
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
    rss = rss_bytes()  # pragma: no cover - only without psutil
    if not rss:  # pragma: no cover
        raise RuntimeError("no way to measure process memory (install psutil)")
    return rss, rss, True


def _read_anon() -> Optional[int]:
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


METRICS = tuple(Metric)


def check_metric(metric: str) -> None:
    """``ValueError`` unless ``metric`` is one of ``METRICS``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")


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
    map_count: Optional[int]
    max_map_count: Optional[int]
    anon: Optional[int] = None
    uss_is_rss: bool = False

    def value(self, metric: str = "uss") -> int:
        """The sample's value for ``metric`` (``"uss"``, ``"anon"`` or ``"rss"``)."""
        if metric == Metric.USS:
            return self.uss
        if metric == Metric.RSS:
            return self.rss
        if metric == Metric.ANON:
            if self.anon is None:
                raise ValueError("anonymous memory is not available in this sample")
            return self.anon
        check_metric(metric)
        raise AssertionError(metric)  # every metric is handled above

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


def settled_sample() -> MemorySample:
    """``settle()``, then ``process_memory()``."""
    settle()
    return process_memory()


def effective_metric(metric: str, sample: MemorySample) -> str:
    """The metric actually measured: USS falls back to RSS, anon to USS."""
    check_metric(metric)
    if metric == Metric.ANON and sample.anon is None:
        metric = Metric.USS
    if metric == Metric.USS and sample.uss_is_rss:
        return Metric.RSS
    return Metric(metric)
