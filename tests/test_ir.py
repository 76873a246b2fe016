"""Program IR: JSON round trips, validation, and rejection of malformed input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from greenfuzz.harness.families import walk
from greenfuzz.harness.program.ir import (
    MAIN,
    Program,
    ProgramError,
    Spawn,
    Switch,
    decode_value,
    encode_value,
)
from greenfuzz.harness.target import runtime
from greenfuzz.harness.target.runtime import Opaque
from greenfuzz.strategies import programs


@given(programs())
def test_json_round_trip(program: Program) -> None:
    again = Program.loads(program.dumps())
    assert again == program
    assert again.dumps() == program.dumps()


@given(programs())
def test_generated_programs_are_valid_and_spawn_everything_once(program: Program) -> None:
    program.validate()
    # Nested too: a shutdown callback may spawn a greenlet of its own.
    spawned = [op.name for _, script in program.scripts() for op in walk(script)
               if isinstance(op, Spawn)]
    assert sorted(spawned) == sorted(program.names)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"format": "greenfuzz-program/1", "main": [', "not valid JSON"),
        ("[]", "not a greenfuzz program"),
        ('{"format": "greenfuzz-program/1"}', "malformed program"),
        ('{"format": "greenfuzz-program/1", "main": [{"op": "Teleport"}], "greenlets": {}}',
         "unknown operation 'Teleport'"),
        ('{"format": "greenfuzz-program/1", "main": [{"op": "Switch"}], "greenlets": {}}',
         "Switch"),
        ('{"format": "greenfuzz-program/1", "main": [{"op": "Switch", "target": "g9"}], '
         '"greenlets": {}}', "unknown greenlet 'g9'"),
        ('{"format": "greenfuzz-program/1", "main": [{"op": "Drop", "target": "main", '
         '"colour": 1}], "greenlets": {}}', "unknown field"),
    ],
)
def test_malformed_programs_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message) as info:
        Program.loads(text)
    assert "\n" not in str(info.value)


def test_spawn_cycles_are_rejected() -> None:
    bad = Program(main=(), greenlets=(("g1", (Spawn("g2"),)), ("g2", (Spawn("g1"),))))
    with pytest.raises(ProgramError, match="spawned by main or an earlier greenlet"):
        bad.validate()


def test_values_keep_tuple_list_and_dict_apart() -> None:
    program = Program(main=(Spawn("g1"), Switch("g1", ((1,), {"a": (2,)}))),
                      greenlets=(("g1", (Switch(MAIN, ((),)),)),))
    data = json.loads(program.dumps())
    assert Program.from_json(data) == program


def test_an_opaque_value_survives_encoding_unchanged() -> None:
    """A value the trace could not represent is saved as its repr once: encoding an
    ``Opaque`` again (a saved trace re-saved, a finding's observed trace) used to wrap it
    in a second repr, ``Opaque("Opaque('...')")``."""
    opaque = Opaque("<object at 0x1>")
    assert encode_value(opaque) == {"repr": "<object at 0x1>"}
    assert decode_value(encode_value(opaque)) == opaque
    trace = [("main", 0, "value", (opaque, [opaque]))]
    twice = runtime.decode_trace(runtime.encode_trace(
        runtime.decode_trace(runtime.encode_trace(trace))))
    assert twice == trace
