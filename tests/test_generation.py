"""Programs decoded from genomes: deterministic, valid, simplest at zero, and shrinking
still ends at small programs."""

from __future__ import annotations

import os
from typing import List

import pytest
from hypothesis import HealthCheck, Phase, find, given, seed, settings
from hypothesis.errors import UnsatisfiedAssumption

from greenfuzz.harness import families as registry
from greenfuzz.harness.families import genes
from greenfuzz.harness.families.core import Spawn, Switch, Throw
from greenfuzz.harness.model import predict
from greenfuzz.harness.program.ir import MAIN, Program
from greenfuzz.harness.search.minimize import simplify
from greenfuzz.strategies import programs
from greenfuzz.strategies.switch_graphs import GENOME_BYTES, decode


def test_a_genome_decodes_to_one_program() -> None:
    data = bytes(range(256)) * 2
    assert decode(data) == decode(data)
    assert decode(data) != decode(bytes(reversed(data)))


def test_the_zero_genome_is_the_simplest_program() -> None:
    simplest = decode(bytes(GENOME_BYTES))
    assert len(simplest.greenlets) == 1
    assert simplest.greenlets[0][1] == ()  # g1 does nothing
    assert simplest.main[0] == Spawn("g1")
    assert simplest.size() == 1, simplest


def test_a_genome_past_its_end_reads_zeros() -> None:
    g = genes.Genome(b"\x05")
    assert g.choice(10) == 5
    assert [g.choice(10), g.choice(1000), g.byte()] == [0, 0, 0]


def test_lists_end_at_byte_zero_and_go_on_at_high_bytes() -> None:
    gene = genes.lists(genes.integers(0, 9), max_size=6)
    assert genes.decode(gene, b"\x00\xff") == []
    assert genes.decode(gene, b"\xff\x03\xff\x04\x00\xff") == [3, 4]
    assert genes.decode(gene, b"\xff\x01" * 10) == [1] * 6  # max_size holds


def test_a_program_the_model_refuses_outside_a_test_is_unsatisfied_without_warning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``decode`` runs outside Hypothesis too (``bench/bench_rules.py``), where
    Hypothesis deprecates ``reject``: the same exception, and no warning."""
    import warnings

    from greenfuzz.harness.model import Unsupported
    from greenfuzz.strategies import switch_graphs

    def refuse(program: Program) -> None:
        raise Unsupported("refused for the test")

    monkeypatch.setattr(switch_graphs, "predict", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnsatisfiedAssumption):
            decode(bytes(range(256)) * 2)


@pytest.mark.parametrize("families", [("core",), ("core", "stack", "threads"), ()])
def test_random_genomes_decode_to_valid_predictable_programs(families: tuple) -> None:
    decoded = 0
    for _ in range(150):
        try:
            program = decode(os.urandom(GENOME_BYTES), families=families)
        except UnsatisfiedAssumption:
            continue
        program.validate()
        predict(program)  # tamed: the model predicts every program it lets through
        drawn = {registry.family_of(op) for _, script in program.scripts()
                 for op in registry.walk(script)}
        assert drawn <= set(families or registry.names()) | {"core"}
        decoded += 1
    assert decoded >= 140


def _draw(strategy, n: int, seed_value: int) -> List[Program]:
    out: List[Program] = []

    @seed(seed_value)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(program: Program) -> None:
        out.append(program)

    collect()
    return out


def test_same_seed_same_programs() -> None:
    first = _draw(programs(), 40, 7)
    assert first == _draw(programs(), 40, 7)
    assert first != _draw(programs(), 40, 8)


def test_every_family_is_drawn() -> None:
    drawn = set()
    for program in _draw(programs(), 60, 3):
        drawn |= {registry.family_of(op) for _, script in program.scripts()
                  for op in registry.walk(script)}
    assert drawn == set(registry.names())


def _throws_into_a_greenlet_that_switches_back(program: Program) -> bool:
    scripts = dict(program.scripts())
    for _, script in program.scripts():
        for op in script:
            if (isinstance(op, Throw) and op.target != MAIN
                    and any(isinstance(o, Switch) for o in scripts.get(op.target, ()))):
                return True
    return False


def test_shrinking_ends_at_a_small_program() -> None:
    """Hypothesis shrinks the genome: the program it settles on is small (a random one
    that satisfies the condition has tens of ops); it may keep greenlets and the
    simplest ops (all-zero bytes) where removing them would shift the bytes other
    choices read, and the campaign's ``simplify`` removes those."""
    found = find(programs(families=("core",)), _throws_into_a_greenlet_that_switches_back,
                 settings=settings(database=None, deadline=None, max_examples=500,
                                   suppress_health_check=list(HealthCheck)))
    assert _throws_into_a_greenlet_that_switches_back(found)
    assert found.size() <= 12, found
    minimal = simplify(found, _throws_into_a_greenlet_that_switches_back)
    assert len(minimal.greenlets) <= 2 and minimal.size() <= 5, minimal
