"""What a program, a finding or a profile file may contain, checked on the decoded JSON
before anything is built, rendered or run.

Finding files travel: they are downloaded from CI artifacts and attached to bug reports,
so reading one must never do more than read data.  Everything here is bounded (file
size, JSON nesting, ops, greenlets, value sizes), every field has a type, and every name
that could end up in source text is an identifier from a fixed pattern.  The check is
generic: an op's fields are checked against the annotations of its dataclass
(``greenfuzz.harness.families.op_types()``), so a new op or field needs nothing here.
Whatever passes may still be refused by ``Program.validate`` (which knows the rules of
each op); whatever does not pass never reaches it.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import math
import re
import typing
from itertools import accumulate
from pathlib import Path
from typing import Any, Dict, Set, Tuple

from greenfuzz.harness.families.base import op_types, spec_of
from greenfuzz.harness.program import ir

#: Fields that name a greenlet besides the registry's references: ``Spawn.name``
#: declares one, which must be a greenlet of the program too.
DECLARING = ("name",)

#: Greenlet names and keyword-argument keys: they become code (``def run_<name>``).
NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
#: Every other string an op field holds (an attribute, a style, an exception type...):
#: a word, which ``Program.validate`` then checks against its list.
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
#: Fields that name a greenlet: must be ``main`` or a greenlet the program declares.

#: Largest file read (bytes): a finding of the biggest program allowed is far smaller.
MAX_FILE_BYTES = 4 << 20
#: Deepest JSON nesting (objects and arrays) accepted; the parser itself recurses.
MAX_JSON_DEPTH = 64
MAX_GREENLETS = 1000
#: Ops in a program, nested ones included (10**6 ops would take the model seconds).
MAX_OPS = 20_000
#: Blocks (``then``) inside blocks: each is an indentation level of the rendered source.
MAX_BLOCK_DEPTH = 12
#: Values: nesting of tagged containers, items in one, characters in a string, and ints
#: (their repr ends up in the source).
MAX_VALUE_DEPTH = 8
MAX_ITEMS = 64
MAX_STRING = 1000
MAX_INT = 2**63


class SchemaError(ir.ProgramError):
    """The JSON is not what it claims to be; the message says where, in one line."""


# -- bounded parsing -------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting(text: str) -> int:
    """How deep objects and arrays nest in JSON ``text`` (strings skipped)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def _refuse_constant(name: str) -> None:
    raise SchemaError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SchemaError(f"number {text[:20]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise SchemaError(f"integer {text[:20]}... is too large")
    return int(text)


def loads(text: str, what: str = "JSON") -> Any:
    """``json.loads`` that refuses deep nesting, NaN/Infinity and huge numbers
    (``SchemaError``) instead of recursing or allocating without bound."""
    if len(text) > MAX_FILE_BYTES:
        raise SchemaError(f"{what} is larger than {MAX_FILE_BYTES >> 20} MiB")
    depth = nesting(text)
    if depth > MAX_JSON_DEPTH:
        raise SchemaError(f"{what} nests {depth} levels deep, more than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite,
                          parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise SchemaError(f"not valid JSON ({e})") from None
    except RecursionError:  # not reached after the depth check; kept as a last line
        raise SchemaError(f"{what} nests too deeply") from None


def read(path: Path, what: str = "file") -> Any:
    """The decoded JSON of ``path``, bounded as ``loads`` is; ``SchemaError`` for a
    missing, unreadable, oversized or malformed file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SchemaError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise SchemaError(f"{path} is a directory, not a {what}") from None
    except OSError as e:
        raise SchemaError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SchemaError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaError(f"{path}: not UTF-8 text") from None
    try:
        return loads(text, what)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None


# -- values ----------------------------------------------------------------------------

def check_value(data: Any, where: str, *, plain: bool = True, depth: int = 0) -> None:
    """A value in the runtime's tagged JSON form (``runtime.encode``).  ``plain`` values
    (what programs pass around) are None, bools, ints, finite floats, strings and tagged
    tuples, lists and scalar-keyed dicts; otherwise the trace's ``exc`` and ``repr`` tags
    are allowed too."""
    if depth > MAX_VALUE_DEPTH:
        raise SchemaError(f"{where}: value nested more than {MAX_VALUE_DEPTH} deep")
    if data is None or isinstance(data, bool):
        return
    if isinstance(data, int):
        if abs(data) >= MAX_INT:
            raise SchemaError(f"{where}: integer out of range")
        return
    if isinstance(data, float):
        if not math.isfinite(data):
            raise SchemaError(f"{where}: {data} is not a finite number")
        return
    if isinstance(data, str):
        if len(data) > MAX_STRING:
            raise SchemaError(f"{where}: string longer than {MAX_STRING} characters")
        return
    if not (isinstance(data, dict) and len(data) == 1):
        raise SchemaError(f"{where}: not a value (a tagged value is an object with one "
                          "key: tuple, list or dict)")
    ((tag, body),) = data.items()
    if tag in ("tuple", "list"):
        _check_items(body, where, tag)
        for item in body:
            check_value(item, where, plain=plain, depth=depth + 1)
    elif tag == "dict":
        _check_items(body, where, tag)
        for pair in body:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise SchemaError(f"{where}: a dict item is a [key, value] pair")
            if not (pair[0] is None or isinstance(pair[0], (bool, int, str))):
                raise SchemaError(f"{where}: dict keys are None, bools, ints or strings")
            check_value(pair[0], where, plain=plain, depth=depth + 1)
            check_value(pair[1], where, plain=plain, depth=depth + 1)
    elif tag == "repr" and not plain:
        if not isinstance(body, str) or len(body) > MAX_STRING:
            raise SchemaError(f"{where}: a repr is a short string")
    elif tag == "exc" and not plain:
        if not (isinstance(body, list) and len(body) == 2 and isinstance(body[0], str)
                and len(body[0]) <= MAX_STRING):
            raise SchemaError(f"{where}: an exc is [type, args]")
        if body[1] is not None:
            check_value(body[1], where, plain=plain, depth=depth + 1)
    else:
        allowed = "tuple, list or dict" if plain else "tuple, list, dict, exc or repr"
        raise SchemaError(f"{where}: unknown value tag {str(tag)[:40]!r} (programs hold "
                          f"plain data: {allowed})")


def _check_items(body: Any, where: str, tag: str) -> None:
    if not isinstance(body, list):
        raise SchemaError(f"{where}: a {tag} holds a list")
    if len(body) > MAX_ITEMS:
        raise SchemaError(f"{where}: a {tag} of more than {MAX_ITEMS} items")


def _string(data: Any, pattern: re.Pattern, where: str, what: str) -> str:
    if not (isinstance(data, str) and pattern.fullmatch(data)):
        shown = repr(data)[:40] if isinstance(data, str) else type(data).__name__
        raise SchemaError(f"{where}: {what} must match {pattern.pattern}, not {shown}")
    return data


# -- programs --------------------------------------------------------------------------

class _Walk:
    """One check of one program: counts ops, knows the declared names."""

    def __init__(self, names: Set[str]) -> None:
        self.names = names
        self.ops = 0

    def script(self, data: Any, where: str, depth: int) -> None:
        if not isinstance(data, list):
            raise SchemaError(f"{where}: a script is a list of ops")
        for i, op in enumerate(data):
            self.op(op, f"{where}[{i}]", depth)

    def op(self, data: Any, where: str, depth: int) -> None:
        self.ops += 1
        if self.ops > MAX_OPS:
            raise SchemaError(f"more than {MAX_OPS} ops")
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: an op is an object")
        name = data.get("op")
        cls = op_types().get(name) if isinstance(name, str) else None
        if cls is None:
            raise SchemaError(f"{where}: unknown operation {repr(name)[:40]}")
        where = f"{where} {name}"
        hints = _hints(cls)
        for key, value in data.items():
            if key == "op":
                continue
            if key not in hints:
                raise SchemaError(f"{where}: unknown field {str(key)[:40]!r}")
            if key == "then":  # a block, whatever its annotation (the IR's codec rule)
                self.block(value, f"{where}.{key}", depth)
            else:
                self.field(value, hints[key], f"{where}.{key}", depth,
                           is_name=key in spec_of(cls).names or key in DECLARING)

    def field(self, data: Any, hint: Any, where: str, depth: int, is_name: bool) -> None:
        """``data`` against the type annotation ``hint`` of a dataclass field."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Union:
            if data is None and type(None) in args:
                return
            errors = []
            for option in (a for a in args if a is not type(None)):
                try:
                    return self.field(data, option, where, depth, is_name)
                except SchemaError as e:
                    errors.append(str(e))
            raise SchemaError(errors[0] if len(errors) == 1 else
                              f"{where}: none of the allowed forms ({'; '.join(errors)})")
        if hint is bool:
            if not isinstance(data, bool):
                raise SchemaError(f"{where}: must be true or false")
        elif hint is int:
            if not isinstance(data, int) or isinstance(data, bool) or abs(data) >= MAX_INT:
                raise SchemaError(f"{where}: must be an integer")
        elif hint is str:
            if is_name:
                _string(data, NAME, where, "a greenlet name")
                if data != ir.MAIN and data not in self.names:
                    raise SchemaError(f"{where}: names undeclared greenlet {data!r}")
            else:
                _string(data, TOKEN, where, "a word")
        elif hint is Any:
            check_value(data, where)
        elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            self.sequence(data, args[0], where, depth)
        elif dataclasses.is_dataclass(hint):
            self.nested(data, hint, where, depth)
        else:
            raise SchemaError(f"{where}: field type {hint} has no JSON form")

    def sequence(self, data: Any, item: Any, where: str, depth: int) -> None:
        """A tuple field: ops (a block), keyword arguments (an object of name keys) or
        values (a tagged tuple)."""
        if typing.get_origin(item) is typing.Union and \
                all(a in op_types().values() for a in typing.get_args(item)):
            self.block(data, where, depth)
        elif typing.get_origin(item) is tuple and typing.get_args(item)[:1] == (str,):
            if not isinstance(data, dict) or len(data) > MAX_ITEMS:
                raise SchemaError(f"{where}: an object of at most {MAX_ITEMS} keys")
            for key, value in data.items():
                _string(key, NAME, where, "a keyword")
                if keyword.iskeyword(key):
                    raise SchemaError(f"{where}: {key!r} is a Python keyword")
                check_value(value, f"{where}.{key}")
        else:
            if not (isinstance(data, dict) and set(data) == {"tuple"}):
                raise SchemaError(f"{where}: a tuple ({{\"tuple\": [...]}})")
            check_value(data, where)

    def block(self, data: Any, where: str, depth: int) -> None:
        """A block of nested ops (the IR's ``then`` fields)."""
        if len(where) > 100:  # one line, however deep the block
            where = where[:40] + " ... " + where[-50:]
        if depth + 1 > MAX_BLOCK_DEPTH:
            raise SchemaError(f"{where}: blocks nested more than {MAX_BLOCK_DEPTH} deep")
        self.script(data, where, depth + 1)

    def nested(self, data: Any, cls: type, where: str, depth: int) -> None:
        """A dataclass inside an op: an object of its fields, or, for a one-field class,
        ``{"<class name in lower case>": value}`` (``Bogus``)."""
        own = [f.name for f in dataclasses.fields(cls)]
        hints = _hints(cls)
        if isinstance(data, dict) and len(own) == 1 and set(data) == {cls.__name__.lower()}:
            return self.field(data[cls.__name__.lower()], hints[own[0]], where, depth, False)
        if not isinstance(data, dict) or not set(data) <= set(own):
            raise SchemaError(f"{where}: a {cls.__name__} is an object of "
                              f"{', '.join(own)}")
        for key, value in data.items():
            self.field(value, hints[key], f"{where}.{key}", depth, False)


_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls: type) -> Dict[str, Any]:
    """The resolved annotations of a dataclass's fields (cached)."""
    if cls not in _HINTS:
        # The class's own module resolves its names; ir's resolves ``Op`` and the like.
        resolved = typing.get_type_hints(cls, localns=vars(ir))
        _HINTS[cls] = {f.name: resolved[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


PROGRAM_KEYS = {"format", "main", "greenlets", "meta"}


def check_program(data: Any, where: str = "program") -> None:
    """``SchemaError`` unless ``data`` is a program's JSON within every bound."""
    if not isinstance(data, dict) or data.get("format") != "greenfuzz-program/1":
        raise SchemaError(f"{where}: not a greenfuzz program (missing format "
                          "'greenfuzz-program/1')")
    unknown = set(data) - PROGRAM_KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))[:80]}")
    greenlets = data.get("greenlets", {})
    if not isinstance(greenlets, dict):
        raise SchemaError(f"{where}.greenlets: an object of name: script")
    if len(greenlets) > MAX_GREENLETS:
        raise SchemaError(f"{where}: more than {MAX_GREENLETS} greenlets")
    for name in greenlets:
        _string(name, NAME, f"{where}.greenlets", "a greenlet name")
    walk = _Walk(set(greenlets))
    walk.script(data.get("main"), f"{where}.main", 0)
    for name, script in greenlets.items():
        walk.script(script, f"{where}.greenlets.{name}", 0)
    meta = data.get("meta", {})
    if not isinstance(meta, dict) or len(meta) > MAX_ITEMS:
        raise SchemaError(f"{where}.meta: an object of at most {MAX_ITEMS} keys")
    for key, value in meta.items():
        _string(key, TOKEN, f"{where}.meta", "a key")
        check_value(value, f"{where}.meta.{key}", plain=False)


#: A finding's fields and their JSON types (the program is checked by ``check_program``;
#: fields not listed are allowed, within the file's bounds).
FINDING_FIELDS: Dict[str, Tuple[type, ...]] = {
    "id": (str,), "kind": (str,), "summary": (str,), "implementation": (dict,),
    "python": (dict,), "expected": (list,), "observed": (dict,),
    "reproduction": (dict, type(None)),
}


def check_finding(data: Any, where: str = "finding") -> Dict[str, Any]:
    """The program JSON of a finding, after checking the finding's fields' types."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: not a finding")
    for key, types in FINDING_FIELDS.items():
        if key in data and not isinstance(data[key], types):
            names = ("null" if t is type(None) else t.__name__ for t in types)
            raise SchemaError(f"{where}.{key}: must be {' or '.join(names)}")
    program = data.get("program")
    check_program(program, f"{where}.program")
    return program


def program_data(data: Any) -> Dict[str, Any]:
    """The checked program JSON of a finding or a bare program."""
    if isinstance(data, dict) and data.get("format") == "greenfuzz-finding/1":
        return check_finding(data)
    check_program(data)
    return data


def string(data: Any, where: str, *, limit: int = MAX_STRING) -> str:
    """``data`` when it is a string of at most ``limit`` characters, else SchemaError."""
    if not isinstance(data, str) or len(data) > limit:
        raise SchemaError(f"{where}: must be a string of at most {limit} characters")
    return data

