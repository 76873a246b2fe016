"""Checked operations per second against raw greenlet switches, in the same run.

    .venv/bin/python bench/bench_core.py [--switches 20000] [--repeat 3]

Three measurements, each the best of ``--repeat``:

* raw: a hand-written ping-pong between two greenlets (the ceiling);
* harness: the same ping-pong as a greenfuzz program, run in-process (generated code,
  recording every event) and checked against the model's prediction;
* model: the model's prediction alone.

Prints switches per second for each and the harness/raw ratio.
"""

from __future__ import annotations

import argparse
import time

import greenlet

from greenfuzz.harness import model
from greenfuzz.harness.execution import implementations, runner
from greenfuzz.harness.judging import checks
from greenfuzz.harness.program.ir import MAIN, Program, Spawn, Switch


def raw_pingpong(switches: int) -> float:
    main = greenlet.getcurrent()

    def run(value):
        while True:
            value = main.switch(value + 1)

    g = greenlet.greenlet(run)
    start = time.perf_counter()
    value = 0
    for _ in range(switches // 2):
        value = g.switch(value)
    elapsed = time.perf_counter() - start
    del g
    return elapsed


def pingpong_program(switches: int) -> Program:
    rounds = switches // 2
    return Program(
        main=(Spawn("g1"), *(Switch("g1", (i,)) for i in range(rounds))),
        greenlets=(("g1", tuple(Switch(MAIN, (i + 1,)) for i in range(rounds))),),
    )


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    impl = implementations.load("greenlet")
    program = pingpong_program(args.switches)
    runner.compile_program(program)  # compile once, as a campaign's replays do
    n = args.switches

    def harness_run() -> float:
        start = time.perf_counter()
        expected = model.predict(program)
        observed = runner.run_inprocess(program, impl)
        verdict = checks.compare(program, expected, observed)
        assert verdict.ok, verdict.summary
        return time.perf_counter() - start

    def model_run() -> float:
        start = time.perf_counter()
        model.predict(program)
        return time.perf_counter() - start

    raw = best(lambda: raw_pingpong(n), args.repeat)
    checked = best(harness_run, args.repeat)
    modelled = best(model_run, args.repeat)
    print(f"{'measurement':<34}{'switches/s':>14}")
    print(f"{'raw greenlet ping-pong':<34}{n / raw:>14,.0f}")
    print(f"{'harness: run + record + check':<34}{n / checked:>14,.0f}")
    print(f"{'model prediction alone':<34}{n / modelled:>14,.0f}")
    print(f"checked/raw ratio: {raw / checked:.3f} (1.0 would be no overhead)")


if __name__ == "__main__":
    main()
