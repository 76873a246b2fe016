"""Tests for greenfuzz.harness.target.rawmemory against the real greenlet (no hard-coded sizes)."""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path

import greenlet
import pytest

from greenfuzz.harness.target import memory as mem
from greenfuzz.harness.target import rawmemory as rm

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs /proc and glibc malloc_trim"
)

PER_BATCH = 2000
LEAK_BYTES = 4096


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.restype = None
    libc.free.argtypes = [ctypes.c_void_p]
    libc.malloc_trim.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def test_process_memory_and_trim() -> None:
    assert mem.trim_heap() is True
    s = mem.process_memory()
    assert not s.uss_is_rss
    assert 0 < s.uss <= s.rss
    # Read a moment apart (smaps_rollup after psutil), so allow what a few allocations
    # in between make: CI once saw anon 4 KiB above USS.
    assert s.anon is not None and 0 < s.anon <= s.uss + (1 << 20)
    assert s.value("uss") == s.uss and s.value("anon") == s.anon and s.value("rss") == s.rss
    assert s.map_count is not None and s.map_count > 10
    with open("/proc/sys/vm/max_map_count") as f:
        assert s.max_map_count == int(f.read())
    assert not s.maps_near_limit()


def test_least_squares() -> None:
    slope, intercept = rm.least_squares([0, 1, 2, 3], [1, 3, 5, 7])
    assert slope == pytest.approx(2.0) and intercept == pytest.approx(1.0)
    assert rm.least_squares([4], [8]) == (2.0, 0.0)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(rm.finish_loop, id="finish"),
        pytest.param(rm.park_and_kill_loop, id="park-python-0"),
        pytest.param(lambda impl: rm.park_and_kill_loop(impl, 10, "c"), id="park-c-10"),
    ],
)
def test_clean_workload_is_not_a_leak(make) -> None:
    workload = make(greenlet)
    for _ in range(2):
        verdict = rm.check_raw_leak(workload, per_batch=PER_BATCH)
        assert verdict.metric == "uss"
        assert verdict.reliable, verdict.summary()
        assert not verdict.leaked, verdict.summary()
        assert len(verdict.samples) == 9 and len(verdict.warmup_samples) == 2
        anon = _rejudge(verdict, "anon")
        assert not anon.leaked and anon.bytes_per_iteration < anon.floor, anon.summary()
    assert workload.iterations == 2 * 10 * PER_BATCH
    # The workloads really ran: every greenlet finished or was killed where it was parked.
    assert getattr(workload, "finished", None) or getattr(workload, "exits", None)
    assert getattr(workload, "finished", 0) + getattr(workload, "exits", 0) == workload.iterations


def _rejudge(verdict: rm.LeakVerdict, metric: str) -> rm.LeakVerdict:
    """The same run judged on another metric (same samples)."""
    return rm.judge_growth(
        verdict.samples,
        per_batch=verdict.per_batch,
        warmup_samples=verdict.warmup_samples,
        metric=metric,
    )


def _check_leak(verdict: rm.LeakVerdict, truth: float) -> None:
    for v in (verdict, _rejudge(verdict, "anon")):
        assert v.reliable, v.summary()
        assert v.leaked, v.summary()
        assert truth / 2 <= v.bytes_per_iteration <= truth * 2, v.summary()


def test_python_heap_leak_is_reported() -> None:
    base = rm.finish_loop(greenlet)
    kept: list[bytearray] = []

    def leaky(n: int) -> None:
        base(n)
        kept.extend(bytearray(LEAK_BYTES) for _ in range(n))

    try:
        _check_leak(rm.check_raw_leak(leaky, per_batch=PER_BATCH), LEAK_BYTES)
    finally:
        kept.clear()
        mem.settle()


def test_c_heap_leak_is_reported() -> None:
    libc = _libc()
    base = rm.park_and_kill_loop(greenlet)
    pointers: list[int] = []

    def leaky(n: int) -> None:
        base(n)
        pointers.extend(libc.malloc(LEAK_BYTES) for _ in range(n))

    try:
        _check_leak(rm.check_raw_leak(leaky, per_batch=PER_BATCH), LEAK_BYTES)
    finally:
        for p in pointers:
            libc.free(p)
        pointers.clear()
        mem.settle()


def _synthetic(values: list[float]) -> list[mem.MemorySample]:
    return [
        mem.MemorySample(uss=int(v), rss=int(v), map_count=100, max_map_count=65530, anon=int(v))
        for v in values
    ]


def test_decision_rule_on_synthetic_samples() -> None:
    base = 50 * mem.MIB
    steady = _synthetic([base + i * 1000 * 200 for i in range(9)])  # 200 B/iteration
    v = rm.judge_growth(steady, per_batch=1000)
    assert v.leaked and v.bytes_per_iteration == pytest.approx(200)
    assert v.floor == pytest.approx(65.536) and v.rising == 8
    # below the floor: 60 B/iteration with per_batch=2000 is not reported
    assert not rm.judge_growth(_synthetic([base + i * 2000 * 60 for i in range(9)]),
                               per_batch=2000).leaked
    # one jump of 6 MiB (a shared library page set turning private): not a leak
    jump = _synthetic([base] * 4 + [base + 6 * mem.MIB] * 5)
    v = rm.judge_growth(jump, per_batch=2000)
    assert v.bytes_per_iteration > v.floor and v.noise > v.bytes_per_iteration
    assert not v.leaked and v.rising == 1
    # steady 4 KiB/iteration plus the same jump: still a leak
    v = rm.judge_growth(
        _synthetic([base + i * 2000 * 4096 + (6 * mem.MIB if i > 3 else 0) for i in range(9)]),
        per_batch=2000,
    )
    assert v.leaked, v.summary()
    # growth that stops after 5 of 8 batches (a cache filling up) is not monotone enough
    saturating = _synthetic([base + min(i, 5) * 2000 * 4096 for i in range(9)])
    v = rm.judge_growth(saturating, per_batch=2000)
    assert v.bytes_per_iteration > v.threshold and v.rising == 5 and not v.leaked
    with pytest.raises(ValueError):
        rm.judge_growth(steady, per_batch=1000, metric="pss")


def test_one_off_growth_is_not_a_leak() -> None:
    """A cache filled once (8 MiB in one batch) is a step, not growth per iteration."""
    base = rm.finish_loop(greenlet)
    calls = [0]
    cache: list[bytearray] = []

    def step(n: int) -> None:
        base(n)
        calls[0] += 1
        if calls[0] == 6:  # the 4th measured batch, after 2 warm-ups
            cache.extend(bytearray(LEAK_BYTES) for _ in range(2048))

    try:
        # Anonymous memory: USS moves by MiBs when other processes start or exit.
        # The step shows less than 8 MiB where earlier tests in the same worker left
        # freed heap that malloc_trim cannot return (seen in CI: 5.1 MiB); a step of
        # several MiB is what matters here.
        verdict = rm.check_raw_leak(step, per_batch=PER_BATCH, metric="anon")
        assert max(verdict.deltas) > 2 * mem.MIB, verdict.summary()
        assert not verdict.leaked, verdict.summary()
    finally:
        cache.clear()
        mem.settle()


def test_map_limit_makes_verdict_unreliable(monkeypatch) -> None:
    """Near vm.max_map_count growth is reported as unreliable, never as a leak."""
    maps = mem.process_memory().map_count
    assert maps is not None
    monkeypatch.setattr(mem, "_read_max_map_count", lambda: maps + 8)
    kept: list[bytearray] = []

    def leaky(n: int) -> None:
        kept.extend(bytearray(LEAK_BYTES) for _ in range(n))

    try:
        verdict = rm.check_raw_leak(leaky, per_batch=500, warmup=0, batches=4)
    finally:
        kept.clear()
        mem.settle()
    assert not verdict.reliable
    assert not verdict.leaked
    assert "max_map_count" in verdict.reason and "UNRELIABLE" in verdict.summary()


def _load_bench():
    """``bench/bench_memory.py``: its plain parking script (module-level functions, no
    harness code) is the reference for measure_parked.  Both run in fresh processes:
    on CPython <= 3.10 frame objects come from pymalloc arenas that an earlier test left
    partly resident, which makes in-process numbers depend on test order."""
    path = Path(__file__).parent.parent / "bench" / "bench_memory.py"
    spec = importlib.util.spec_from_file_location("bench_memory", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bytes_per_greenlet_in_child(script: tuple, n: int, depth: int, via: str) -> float:
    job = {"impl": "greenlet", "n": n, "counts": [n], "depth": depth, "via": via,
           "metric": "uss"}
    result, _ = BENCH.run_child(script, job, 120)
    assert "error" not in result, result
    return float(result["per_greenlet"])


BENCH = _load_bench()


@pytest.mark.slow
def test_measure_parked_fit_grows_with_c_depth() -> None:
    counts = (2000, 5000, 10000)
    flat = rm.measure_parked(greenlet, counts, depth=0, via="python")
    deep = rm.measure_parked(greenlet, counts, depth=10, via="c")
    info = f"{flat.summary()} | {deep.summary()}"
    for fit in (flat, deep):
        assert fit.reliable, info
        assert fit.slope > 0 and not fit.exceeds(fit.slope) and fit.exceeds(0), info
        assert fit.exits == fit.parked == sum(counts), info
        assert all(d > 0 for d in fit.deltas), info
        # dropping everything gives the memory back (within a few MiB of noise)
        assert all(r < 0.25 * d for r, d in zip(fit.residuals, fit.deltas)), info
    # C-level recursion puts frames on the C stack that must be copied per greenlet.
    assert deep.slope > 1.3 * flat.slope, info


def test_measure_parked_matches_plain_script() -> None:
    configs = (("python", 0, 20000), ("c", 10, 10000))
    got = {}
    for via, depth, n in configs:
        plain = _bytes_per_greenlet_in_child(BENCH.PLAIN, n, depth, via)
        harness = _bytes_per_greenlet_in_child(BENCH.HARNESS, n, depth, via)
        got[via, depth] = (plain, harness)
    info = repr(got)
    for plain, harness in got.values():
        assert plain > 0, info
        # USS can jump by a few MiB when other processes map the same libraries.
        assert 0.85 < harness / plain < 1.15, info
    (plain_flat, harness_flat), (plain_deep, harness_deep) = got.values()
    assert plain_deep > 1.3 * plain_flat, info
    assert harness_deep > 1.3 * harness_flat, info
