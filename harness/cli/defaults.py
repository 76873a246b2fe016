"""Defaults from ``[tool.greenfuzz]`` in the current directory's ``pyproject.toml``, and
each command's exit statuses for its ``--help``.

A project that runs greenfuzz in CI writes its choices once::

    [tool.greenfuzz]
    impl = "mypkg.greenlet"
    families = ["core", "exceptions"]
    budget = 120
    out = "greenfuzz-findings"

    [tool.greenfuzz.matrix]      # for one command only
    budget = 10

Keys are option names (``max-examples`` or ``max_examples``); a value applies to every
command that has that option, and options on the command line override it.  A key no
command knows is a usage error (exit status 2), like a mistyped option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tomli backport
    import tomli as tomllib

#: Exit statuses of a command not listed below.
EXIT_ANY = "0 nothing found, 1 a finding, 2 bad usage or input, 3 internal error"
#: What each command's exit status means (shown in its ``--help``).
EXIT_STATUSES: Dict[str, str] = {
    "fuzz": "0 no finding, 1 a finding (on disk in --out), 2 bad usage or input, "
            "3 internal error",
    "replay": "0 the implementation agrees with the model (or differs as documented), "
              "1 it does not, 2 bad usage or input, 3 internal error",
    "impls": "0 listed, 2 bad usage, 3 internal error",
    "diff": "0 the sides agree, 1 a disagreement (on disk in --out), 2 bad usage or "
            "input, 3 internal error",
    "matrix": "0 no cell has a finding, 1 a cell has a finding, 2 bad usage or every cell "
              "was skipped (nothing could be tested), 3 internal error",
    "scale": "0 the run passed, 1 a failure (on disk), 2 bad usage or input, "
             "3 internal error",
    "env": "0 done, 2 bad usage or the environment cannot be made, 3 internal error",
    "profile": "0 measured and agreeing, 1 a target could not be measured or the plain "
               "script disagrees with the harness, 2 bad usage, 3 internal error",
}


class DefaultsError(Exception):
    """``[tool.greenfuzz]`` cannot be used: the message says why, in one line."""


def read(folder: Path) -> Dict[str, Any]:
    """The ``[tool.greenfuzz]`` table of ``folder/pyproject.toml`` (empty when none)."""
    path = folder / "pyproject.toml"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise DefaultsError(f"cannot read {path}: {e}") from None
    table = data.get("tool", {}).get("greenfuzz", {})
    if not isinstance(table, dict):
        raise DefaultsError(f"{path}: [tool.greenfuzz] must be a table")
    return table


def _as_default(action: argparse.Action, value: Any) -> Any:
    """A TOML value as argparse would take it from the command line (strings are run
    through the option's type, so a bad value is reported like a bad option)."""
    if isinstance(value, bool) or action.nargs == 0:
        return bool(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def apply(commands: Mapping[str, argparse.ArgumentParser], folder: Path = Path(".")) -> None:
    """Set each command's defaults from ``folder/pyproject.toml``."""
    table = read(folder)
    if not table:
        return
    common = {k: v for k, v in table.items() if not isinstance(v, dict)}
    strangers = sorted(k for k, v in table.items() if isinstance(v, dict) and k not in commands)
    if strangers:
        raise DefaultsError(f"[tool.greenfuzz.{strangers[0]}]: no such command")
    used = set()
    for name, parser in commands.items():
        own = table.get(name, {})
        if not isinstance(own, dict):
            own = {}
        actions = {a.dest: a for a in parser._actions}
        for key, value in {**common, **own}.items():
            dest = key.replace("-", "_")
            action = actions.get(dest)
            if action is None or not action.option_strings or dest == "sides":
                if key in own:
                    raise DefaultsError(f"[tool.greenfuzz.{name}]: {name} has no option "
                                        f"--{key.replace('_', '-')}")
                continue
            parser.set_defaults(**{dest: _as_default(action, value)})
            used.add(key)
    unknown = sorted(set(common) - used)
    if unknown:
        raise DefaultsError(f"[tool.greenfuzz]: no command has the option "
                            f"--{unknown[0].replace('_', '-')}")
