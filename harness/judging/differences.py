"""Documented differences of an implementation, as data: what is ``known``, not a finding.

Some implementations differ from greenlet on purpose or by a documented, open bug (PyPy's
greenlet sends no ``GreenletExit`` to a collected greenlet: PyPy issue #3162).  Reporting
those as findings again and again hides everything else, so a profile lists them, each
with its source, and a divergence that matches an entry is counted as ``known``.  A
profile is a JSON file (``harness/judging/documented/<name>.json``, or any path)::

    {"format": "greenfuzz-profile/1",
     "implementation": "...",
     "differences": [
        {"id": "no-greenletexit-on-collection",
         "summary": "...",
         "source": "https://... (where it is documented)",
         "match": {"kind": "mismatch",
                   "expected": {"kind": "died", "exc": "GreenletExit"},
                   "observed": {"kind": "teardown"},
                   "op": "Drop"}}]}

``match`` is tested against the finding's first divergence only: the verdict kind,
``detail`` (text the verdict or the run's output must contain, for a crash's message),
``detail_end`` (text the run's output must end with: a crash dump cut short),
``detail_cut`` (text the run's output must hold with at most one unfinished line after
it: a dump that stops there or inside its next line), the
expected and observed events there (event ``kind`` and, for exceptions, ``exc``, the
exception's type name; ``payload`` for an exact value) and ``op``, the operation the
expected event belongs to (its class name, or an object of the class name under
``type`` and field values, where ``"$self"`` is the greenlet performing the op), and
``program_has``, ops (the same patterns) that must each occur somewhere in the program.  Every
key given must match; keys left out match anything.  Only the first divergence is
looked at, so a known difference early in a program can hide a later bug in that same
program; other programs still find it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from greenfuzz.harness.program import schema
from greenfuzz.harness.program.ir import Program, flatten, walk
from greenfuzz.harness.target import runtime

FORMAT = "greenfuzz-profile/1"
#: The verdict kind of a divergence that a profile documents.
KNOWN = "known"
PROFILES_DIR = Path(__file__).with_name("documented")
_EVENT_KEYS = {"kind", "exc", "payload"}
_MATCH_KEYS = {"kind", "expected", "observed", "op", "detail", "detail_end", "detail_cut",
               "program_has"}


class ProfileError(Exception):
    """A profile that cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Difference:
    id: str
    summary: str
    source: str
    match: Dict[str, Any]


@dataclass(frozen=True)
class Profile:
    name: str
    implementation: str
    differences: Tuple[Difference, ...]
    #: The greenlet releases the profile describes (``{"from": "1.0", "before":
    #: "2.0.0a1"}``, either bound optional): such a profile is applied by default to a
    #: run on a greenlet release in the range (``for_greenlet``).  None: any implementation.
    releases: Optional[Dict[str, str]] = None
    #: The interpreter versions (CPython's ``3.11``...) it applies to, as a range like
    #: ``releases``; None: any.
    pythons: Optional[Dict[str, str]] = None

    def known(self, program: Program, kind: str, expected: Sequence[tuple],
              observed: Sequence[tuple], index: Optional[int],
              detail: str = "") -> Optional[Difference]:
        """The documented difference this divergence is, or None (``detail``: what the
        verdict and the run said, for entries matching a crash's message)."""
        for difference in self.differences:
            if _matches(difference.match, program, kind, expected, observed, index) and \
                    difference.match.get("detail", "") in detail and \
                    detail.endswith(difference.match.get("detail_end", "")) and \
                    _cut_after(detail, difference.match.get("detail_cut")):
                return difference
        return None


def _cut_after(detail: str, text: Optional[str]) -> bool:
    """Whether ``detail`` stops at ``text`` or inside the line after it (True when there
    is no ``text`` to look for)."""
    if text is None:
        return True
    at = detail.rfind(text)
    return at >= 0 and "\n" not in detail[at + len(text):]


def names() -> List[str]:
    """The profiles that come with greenfuzz."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load(spec: str) -> Profile:
    """A bundled profile by name (``pypy``) or a profile file by path."""
    path = Path(spec)
    if not (spec.endswith(".json") or os.sep in spec):  # a name, not a path
        path = PROFILES_DIR / f"{spec}.json"
        if not path.exists():
            raise ProfileError(f"unknown differences {spec!r}: the bundled ones are "
                               f"{', '.join(names())}, or give a .json path")
    try:
        data = schema.read(path, "differences file")
    except schema.SchemaError as e:
        raise ProfileError(f"cannot read differences file {spec}: {e}"
                           if "no such file" not in str(e)
                           else f"differences file not found: {spec}") from None
    return parse(data, path.stem, spec)


#: Bounds of a profile's fields (a profile file may come from anywhere).
MAX_DIFFERENCES = 256
MAX_TEXT = 2000
DIFFERENCE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def parse(data: Any, name: str, where: str = "profile") -> Profile:
    """A profile from its decoded JSON; ``ProfileError`` (one line) unless every field
    has its type and bounds."""
    try:
        return _parse(data, name, where)
    except schema.SchemaError as e:
        raise ProfileError(str(e)) from None


def _parse(data: Any, name: str, where: str) -> Profile:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{where}: not a greenfuzz differences file (\"format\": \"{FORMAT}\")")
    unknown_keys = set(data) - {"format", "implementation", "differences", "greenlet",
                                "python"}
    if unknown_keys:
        raise ProfileError(f"{where}: unknown key(s) {_shown(unknown_keys)}")
    implementation = schema.string(data.get("implementation", name), f"{where}.implementation",
                                   limit=MAX_TEXT)
    entries = data.get("differences")
    if not isinstance(entries, list):
        raise ProfileError(f"{where}: \"differences\" must be a list")
    if len(entries) > MAX_DIFFERENCES:
        raise ProfileError(f"{where}: more than {MAX_DIFFERENCES} differences")
    differences = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ProfileError(f"{where}: difference {i} is not an object")
        missing = [k for k in ("id", "summary", "source", "match") if not entry.get(k)]
        if missing:
            raise ProfileError(f"{where}: difference {i} lacks {', '.join(missing)} "
                               "(every entry needs a source)")
        extra = set(entry) - {"id", "summary", "source", "match"}
        if extra:
            raise ProfileError(f"{where}: difference {i}: unknown key(s) {_shown(extra)}")
        ident = entry["id"]
        if not (isinstance(ident, str) and DIFFERENCE_ID.fullmatch(ident)):
            raise ProfileError(f"{where}: difference {i}: id must match "
                               f"{DIFFERENCE_ID.pattern}")
        for key in ("summary", "source"):
            schema.string(entry[key], f"{where}: difference {ident}: {key}", limit=MAX_TEXT)
        _check_match(entry["match"], f"{where}: difference {ident}")
        differences.append(Difference(ident, entry["summary"], entry["source"],
                                      entry["match"]))
    return Profile(name, implementation, tuple(differences),
                   _releases(data.get("greenlet"), where), _releases(data.get("python"), where))


def _releases(data: Any, where: str) -> Optional[Dict[str, str]]:
    if data is None:
        return None
    if not isinstance(data, dict) or not data or set(data) - {"from", "before"}:
        raise ProfileError(f"{where}: \"greenlet\" is a release range: "
                           "{\"from\": VERSION, \"before\": VERSION}")
    for bound in data.values():
        if release_key(bound) is None:
            raise ProfileError(f"{where}: not a greenlet release number: {str(bound)[:40]!r}")
    return dict(data)


_RELEASE = re.compile(r"([0-9]+(?:\.[0-9]+)*)(?:(a|b|rc)([0-9]+))?(?:\.post([0-9]+))?")
_PRE = {"a": 0, "b": 1, "rc": 2, None: 3}


def release_key(version: Any) -> Optional[Tuple[Any, ...]]:
    """A sortable key of a release number (``2.0.0a1`` < ``2.0.0`` < ``2.0.0.post1``),
    or None for anything else."""
    match = _RELEASE.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        return None
    numbers = tuple(int(n) for n in match[1].split("."))
    numbers += (0,) * (6 - len(numbers))
    return (numbers, _PRE[match[2]], int(match[3] or 0), int(match[4] or 0))


def in_range(version: str, releases: Dict[str, str]) -> bool:
    """Whether greenlet ``version`` is in ``releases`` (``from`` inclusive, ``before``
    exclusive)."""
    key = release_key(version)
    if key is None:
        return False
    low, high = release_key(releases.get("from", "0")), release_key(releases.get("before"))
    return (low is None or key >= low) and (high is None or key < high)


def for_greenlet(version: str, python: str = "") -> Optional[Profile]:
    """The bundled profiles of greenlet releases whose range holds ``version`` (and, for
    those that name interpreter versions, whose range holds ``python``), as one (None
    when there are none): documented changes and known bugs of releases are data."""
    found = [p for p in (load(name) for name in names())
             if p.releases is not None and in_range(version, p.releases)
             and (p.pythons is None or in_range(python, p.pythons))]
    if not found:
        return None
    return combine(found, f"greenlet {version}")


def with_release(asked: Optional[Profile], spec: str, version: str,
                 python: str) -> Optional[Profile]:
    """``asked`` (the profile a user named, or None) plus, when the implementation is the
    greenlet package, the bundled profiles of its release (``for_greenlet``): every way of
    running a campaign (the CLI, the pytest plugin) counts the same divergences as known."""
    if spec != "greenlet" or not version:
        return asked
    release = for_greenlet(version, python)
    if release is None:
        return asked
    return release if asked is None else combine([asked, release], asked.implementation)


def combine(profiles: Sequence[Profile], implementation: str) -> Profile:
    """One profile with the differences of all of ``profiles``."""
    return Profile("+".join(p.name for p in profiles), implementation,
                   tuple(d for p in profiles for d in p.differences))


def _shown(keys: Any) -> str:
    return ", ".join(sorted(repr(k)[:40] for k in keys))[:200]


def _check_match(match: Any, where: str) -> None:
    """``match`` holds only the keys and types ``_matches`` reads."""
    if not isinstance(match, dict):
        raise ProfileError(f"{where}: unknown match keys (not an object)")
    unknown = set(match) - _MATCH_KEYS
    for side in ("expected", "observed"):
        if side in match:
            if not isinstance(match[side], dict):
                raise ProfileError(f"{where}: match {side} must be an object")
            unknown |= set(match[side]) - _EVENT_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown match keys {_shown(unknown)}")
    if "kind" in match:
        schema.string(match["kind"], f"{where}: match kind", limit=40)
    for key in ("detail", "detail_end", "detail_cut"):
        if key in match:
            schema.string(match[key], f"{where}: match {key}", limit=200)
    for side in ("expected", "observed"):
        event = match.get(side, {})
        for key in ("kind", "exc"):
            if key in event:
                schema.string(event[key], f"{where}: match {side} {key}", limit=100)
        if "payload" in event:
            schema.check_value(event["payload"], f"{where}: match {side} payload",
                               plain=False)
            try:
                runtime.decode(event["payload"])
            except (ValueError, TypeError, AttributeError, IndexError) as e:
                raise ProfileError(f"{where}: match {side} payload: {e}") from None
    if "op" in match:
        _check_op(match["op"], f"{where}: match op")
    if "program_has" in match:
        has = match["program_has"]
        if not isinstance(has, list) or not 0 < len(has) <= 8:
            raise ProfileError(f"{where}: match program_has is a list of 1 to 8 ops")
        for i, op in enumerate(has):
            _check_op(op, f"{where}: match program_has {i}")


def _check_op(op: Any, where: str) -> None:
    """An op pattern: an op name, or an object of the name under ``type`` and fields."""
    if isinstance(op, str):
        schema.string(op, where, limit=40)
        return
    if not isinstance(op, dict) or len(op) > 16:
        raise ProfileError(f"{where} is an op name or an object of fields")
    for key, value in op.items():
        if not (value is None or isinstance(value, (bool, int, str))) or \
                (isinstance(value, str) and len(value) > 100):
            raise ProfileError(f"{where} field {str(key)[:40]!r} must be a "
                               "short string, a number, a bool or null")


def _matches(match: Dict[str, Any], program: Program, kind: str, expected: Sequence[tuple],
             observed: Sequence[tuple], index: Optional[int]) -> bool:
    if "kind" in match and match["kind"] != kind:
        return False
    want = expected[index] if index is not None and index < len(expected) else None
    got = observed[index] if index is not None and index < len(observed) else None
    if "expected" in match and not _event_matches(match["expected"], want):
        return False
    if "observed" in match and not _event_matches(match["observed"], got):
        return False
    if "op" in match:
        if want is None:
            return False
        who, pc = want[0], want[1]
        try:
            script = flatten(program.script(who))  # as events number ops: nested ones too
        except KeyError:
            return False
        if not (0 <= pc < len(script) and _op_matches(match["op"], script[pc], who)):
            return False
    for pattern in match.get("program_has", ()):
        if not any(_op_matches(pattern, op, who) for who, script in program.scripts()
                   for op in walk(script)):
            return False
    return True


def _op_matches(pattern: Union[str, Dict[str, Any]], op: object, who: str) -> bool:
    """``"Throw"``, or ``{"type": "Inspect", "attr": "run"}`` (fields equal; the value
    ``"$self"`` is the greenlet performing the op)."""
    if isinstance(pattern, str):
        return type(op).__name__ == pattern
    for key, value in pattern.items():
        if key == "type":
            if type(op).__name__ != value:
                return False
        elif getattr(op, key, object()) != (who if value == "$self" else value):
            return False
    return True


def _event_matches(pattern: Dict[str, Any], event: Optional[tuple]) -> bool:
    if event is None:
        return pattern.get("kind") == "end"
    _, _, kind, payload = event
    if "kind" in pattern and pattern["kind"] != kind:
        return False
    if "exc" in pattern and not (isinstance(payload, runtime.ExcValue)
                                 and payload.type == pattern["exc"]):
        return False
    return "payload" not in pattern or runtime.decode(pattern["payload"]) == payload
