"""Implementations under test: loading them by name or path, and what they provide.

An implementation is any module with greenlet's public API.  The harness never imports
the real greenlet behind an implementation's back: programs run against the module's own
``greenlet`` class and functions.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

from greenfuzz.harness.target.loader import OPTIONAL, api_problem, load_checked

HOST_MACHINE = platform.machine()


class ImplementationError(Exception):
    """An implementation cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Implementation:
    """An implementation and the parts of the API it provides.

    ``module`` is the imported module when it runs in this process; an implementation
    examined by a worker under another interpreter has none, only what the worker said.
    """

    spec: str
    module: Optional[ModuleType] = field(default=None, compare=False, repr=False)
    missing_optional: Tuple[str, ...] = ()
    version: str = ""
    python: str = ""

    @property
    def name(self) -> str:
        name = f"{self.spec} {self.version}" if self.version else self.spec
        return f"{name} under {self.python}" if self.python else name

    def has(self, feature: str) -> bool:
        return feature not in self.missing_optional


def load(spec: str) -> Implementation:
    """Import ``spec`` (a module name or a ``.py`` path) and check its API."""
    module, problem = load_checked(spec)
    if module is None:
        raise ImplementationError(problem)
    return check(spec, module)


def check(spec: str, module: ModuleType) -> Implementation:
    """Name what is missing from the API: required parts fail, optional ones are noted."""
    problem = api_problem(spec, module)
    if problem:
        raise ImplementationError(problem)
    optional_missing = tuple(name for name in OPTIONAL if not hasattr(module, name))
    version = getattr(module, "__version__", None)
    return Implementation(spec=spec, module=module, missing_optional=optional_missing,
                          version=version if isinstance(version, str) else "")


def from_worker(spec: str, hello: Dict[str, Any], python: str = "") -> Implementation:
    """The implementation as a worker process (``greenfuzz.harness.target.worker``) reported it."""
    return Implementation(
        spec=spec,
        missing_optional=tuple(hello.get("missing_optional") or ()),
        version=hello.get("impl_version") or "",
        python=python and f"{hello.get('implementation', 'python')} {hello.get('python', '')}"
        + (f" on {hello['machine']}" if hello.get("machine", HOST_MACHINE) != HOST_MACHINE
           else ""),
    )
