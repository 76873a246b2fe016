"""Finding and profile files are data: whatever a crafted or damaged file holds,
``greenfuzz replay`` (and ``--differences``) and ``greenfuzz report`` exit 0, 1 or 2, say
why in one line when they refuse, print no traceback and run nothing but the program."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from greenfuzz.harness.judging import differences
from greenfuzz.harness.program import schema
from greenfuzz.harness.program.ir import FAMILIES, Program
from greenfuzz.strategies import programs

#: Replaced by the path of a file that must never come to exist.
MARKER = "@MARKER@"
#: Strings that would run code if pasted into the rendered source unescaped.
PAYLOADS = (
    f"__import__('os').system('touch {MARKER}')",
    f"x(*a, **k):\n        __import__('os').system('touch {MARKER}')\n    def y",
    f"a=__import__('os').system('touch {MARKER}'),b",
    f"'); __import__('os').system('touch {MARKER}') #",
    f"ValueError)\n__import__('os').system('touch {MARKER}')\n(",
    f"g1 if open('{MARKER}', 'w') else g1",
)

#: A program with most kinds of op and field (every family), valid as it stands.
BASE_PROGRAM: dict = {
    "format": "greenfuzz-program/1",
    "main": [
        {"op": "Spawn", "name": "g1"}, {"op": "Spawn", "name": "g2", "parent": "g1"},
        {"op": "Switch", "target": "g1", "args": {"tuple": [1, "x"]}, "kwargs": {"a": 2}},
        {"op": "Throw", "target": "g2", "exc": {"type": "ValueError", "args": {"tuple": [3]}},
         "style": "instance"},
        {"op": "Inspect", "target": "g1", "attr": "dead"},
        {"op": "SetParent", "target": "g2", "parent": {"bogus": 5}},
        {"op": "CtxSet", "var": "a", "value": {"dict": [["k", 1]]}},
        {"op": "InThread", "then": [{"op": "Current"}]},
    ],
    "greenlets": {
        "g1": [{"op": "Recurse", "depth": 2, "via": "call", "salt": 7,
                "then": [{"op": "Switch", "target": "main", "args": {"tuple": [4]}}]},
               {"op": "Return", "value": {"tuple": []}}],
        "g2": [{"op": "Handle", "exc": {"type": "KeyError", "args": {"tuple": []}},
                "then": [{"op": "ExcInfo"}]},
               {"op": "Finally", "then": [{"op": "Current"}], "split": 1}],
    },
    "meta": {"seed": 1},
}


def _paths(node: Any, at: Tuple = ()) -> List[Tuple]:
    """Every position in a JSON document (as a path of keys and indexes)."""
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*at, i))
    return found


def _replace(doc: Any, path: Tuple, value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


def _rename(doc: Any, path: Tuple, new_key: str) -> Any:
    """``doc`` with the key at ``path`` (of an object) renamed."""
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    if isinstance(node, dict) and path:
        node[new_key] = node.pop(path[-1])
    return doc


hostile_strings = st.one_of(st.text(max_size=12), st.sampled_from(PAYLOADS),
                            st.sampled_from(["main", "g1", "", "if", "x" * 5000, "1g", "G1"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**19),
                    st.floats(), hostile_strings)
tagged = st.sampled_from([{"repr": "Opaque('x')"}, {"exc": ["ValueError", None]},
                          {"tuple": [float("nan")]}, {"list": [1]}, {"dict": [[[1], 2]]},
                          {"nope": 1}, {"tuple": [1], "list": []}, {"dict": [[1, 2, 3]]}])
hostile_values = st.recursive(
    st.one_of(scalars, tagged),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(hostile_strings, inner, max_size=3),
                            inner.map(lambda v: {"tuple": [v]})),
    max_leaves=8)


def _deep_ops(depth: int) -> dict:
    op: dict = {"op": "Current"}
    for _ in range(depth):
        op = {"op": "Handle", "exc": {"type": "KeyError", "args": {"tuple": []}}, "then": [op]}
    return {"format": "greenfuzz-program/1", "main": [op], "greenlets": {}}


#: Whole documents that are hostile by shape (as text: some are not JSON values).
SHAPES = {
    "deep-arrays": "[" * 100_000 + "]" * 100_000,
    "deep-objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "ops-25-deep": json.dumps(_deep_ops(25)),
    "ops-200-deep": json.dumps(_deep_ops(200)),
    "million-ops": json.dumps({"format": "greenfuzz-program/1",
                               "main": [{"op": "Current"}] * 1_000_000, "greenlets": {}}),
    "undeclared-spawn": json.dumps({"format": "greenfuzz-program/1",
                                    "main": [{"op": "Spawn", "name": "g9"}], "greenlets": {}}),
    "nan": '{"format": "greenfuzz-program/1", "main": [{"op": "Return", "value": NaN}]}',
    "huge-int": '{"format": "greenfuzz-program/1", "main": [{"op": "Return", "value": '
                + "9" * 5000 + "}]}",
    "not-utf8": "\udcff",
    "empty": "",
    "finding-wrapping-bad-program": json.dumps({"format": "greenfuzz-finding/1",
                                                "program": _deep_ops(30)}),
}


def _run(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greenfuzz", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _assert_data_only(done: subprocess.CompletedProcess, cwd: Path, before: set) -> None:
    out = done.stdout + done.stderr
    assert done.returncode in (0, 1, 2), out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    if done.returncode == 2:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("greenfuzz: error: "), done.stderr
    assert not (cwd / "marker").exists(), "a payload in the file ran"
    assert {p.name for p in cwd.iterdir()} == before, "files appeared"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_bytes(text.replace(MARKER, str(folder / "marker"))
                     .encode("utf-8", "surrogateescape"))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hostile_shapes_are_refused_in_one_line(folder: Path, shape: str) -> None:
    path = _write(folder, f"{shape}.json", SHAPES[shape])
    before = {p.name for p in folder.iterdir()}
    done = _run(["replay", str(path)], folder)
    _assert_data_only(done, folder, before)
    assert done.returncode == 2


@st.composite
def hostile_documents(draw: st.DrawFn, base: Any) -> str:
    """``base`` with one node replaced by a hostile value, or one key renamed."""
    path = draw(st.sampled_from(_paths(base)))
    if path and isinstance(path[-1], str) and draw(st.booleans()):
        doc = _rename(base, path, draw(hostile_strings))
    else:
        doc = _replace(base, path, draw(hostile_values))
    return json.dumps(doc, allow_nan=True)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=hostile_documents(BASE_PROGRAM))
@example(text=json.dumps(_replace(BASE_PROGRAM, ("greenlets",), {PAYLOADS[1]: []})))
@example(text=json.dumps(_replace(BASE_PROGRAM, ("main", 2, "kwargs"), {PAYLOADS[2]: 1})))
@example(text=json.dumps(_replace(BASE_PROGRAM, ("main", 3, "exc", "type"), PAYLOADS[4])))
def test_replay_of_hostile_programs(folder: Path, text: str) -> None:
    path = _write(folder, "finding.json", text)
    before = {p.name for p in folder.iterdir()}
    _assert_data_only(_run(["replay", str(path)], folder), folder, before)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=hostile_documents(json.loads(
    (differences.PROFILES_DIR / "pypy.json").read_text())))
def test_hostile_profiles(folder: Path, text: str) -> None:
    program = _write(folder, "program.json", json.dumps(BASE_PROGRAM))
    profile = _write(folder, "profile.json", text)
    before = {p.name for p in folder.iterdir()}
    _assert_data_only(_run(["replay", str(program), "--differences", str(profile)], folder),
                      folder, before)


def test_deep_profile_is_refused(folder: Path) -> None:
    program = _write(folder, "program.json", json.dumps(BASE_PROGRAM))
    profile = _write(folder, "deep-profile.json", SHAPES["deep-objects"])
    before = {p.name for p in folder.iterdir()}
    done = _run(["replay", str(program), "--differences", str(profile)], folder)
    _assert_data_only(done, folder, before)
    assert done.returncode == 2 and "nests" in done.stderr


#: A finding greenlet made (kept in ``tests/crashes``), for ``greenfuzz report``.
KEPT_FINDING = Path(__file__).parent / "crashes" / "kill_beside_finalizer_frame.json"


@pytest.mark.parametrize("crafted", ["interpreter", "implementation", "id", "version"])
def test_report_runs_no_interpreter_or_file_a_finding_names(tmp_path: Path,
                                                            crafted: str) -> None:
    """``greenfuzz report`` ran the interpreter and the ``.py`` implementation a finding
    named, and wrote its plain file where the finding's id pointed: a downloaded finding
    could run anything.  Now only greenlet, under this interpreter or one of the same
    versions, runs without ``--impl``/``--python``; an id must be a finding's name."""
    marker = tmp_path / "marker"
    data = json.loads(KEPT_FINDING.read_text())
    if crafted == "interpreter":
        fake = tmp_path / "python3"
        fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
        fake.chmod(0o755)
        data["python"]["executable"] = str(fake)
    elif crafted == "implementation":
        (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                         "from greenlet import *  # noqa\n")
        data["implementation"]["spec"] = "evil.py"
    elif crafted == "id":
        data["id"] = "../escaped-0123456789"
    else:  # it goes into the plain file's docstring: a NUL made it fail to compile
        data["implementation"]["version"] = "3.5.6\x00"
    (tmp_path / "finding.json").write_text(json.dumps(data))
    before = {p.name for p in tmp_path.iterdir()}
    done = _run(["report", "finding.json"], tmp_path)
    _assert_data_only(done, tmp_path, before)
    assert not (tmp_path.parent / "escaped-0123456789.plain.py").exists()
    if crafted == "implementation":
        assert done.returncode == 0 and "`--impl evil.py` runs it" in done.stdout
    elif crafted == "id":
        assert done.returncode == 2 and "is not a finding's name" in done.stderr
    elif crafted == "version":
        assert done.returncode == 2 and "is not printable text" in done.stderr


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(alphabet=st.sampled_from('\\"\'Nux{}0 \n#'), max_size=12),
                      max_size=4))
@example(lines=["greenlet 3.5.6 \\N"])  # a crafted version: a SyntaxError before
@example(lines=['x \\"""', f'"""\n{PAYLOADS[0]}\n"""'])
def test_docstrings_of_written_scripts_hold_any_text_as_text(lines: List[str]) -> None:
    """Reproducers put a finding's versions and names in their docstring: whatever they
    hold stays text (a backslash escape made the plain file a SyntaxError, which exits 1
    and read as a reproduction)."""
    import ast

    from greenfuzz.harness.families.base import python_docstring

    text = python_docstring(lines)
    tree = ast.parse(text)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
    assert ast.literal_eval(text) == "\n".join(
        line.replace('"""', "'''") for line in lines).rstrip() + "\n"


def test_base_program_is_valid() -> None:
    """The hostile documents start from a program that passes (so refusals are caused by
    what was changed)."""
    schema.check_program(BASE_PROGRAM)
    Program.from_json(BASE_PROGRAM)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_greenlets=8, families=FAMILIES))
def test_every_drawn_program_passes_the_schema(program: Program) -> None:
    """The schema refuses nothing greenfuzz itself writes."""
    data = json.loads(program.dumps())
    schema.check_program(data)
    assert Program.from_json(data) == program


def test_bounded_parse() -> None:
    with pytest.raises(schema.SchemaError, match="nests"):
        schema.loads("[" * 1000 + "]" * 1000)
    with pytest.raises(schema.SchemaError, match="NaN"):
        schema.loads("[NaN]")
    with pytest.raises(schema.SchemaError, match="range"):
        schema.loads("[1e999]")
    with pytest.raises(schema.SchemaError, match="too large"):
        schema.loads("[" + "1" * 30 + "]")
    assert schema.nesting('["[[[", {"a": []}]') == 3
