"""Processes greenfuzz starts die with it.

Every worker, reproducer check and other child greenfuzz starts runs in a session (and
process group) of its own, which greenfuzz kills as a whole when it is done with it; but
a greenfuzz killed with SIGKILL, or by an error, kills nothing.  So each child also asks
the kernel to kill it when greenfuzz ends (Linux ``PR_SET_PDEATHSIG``), and the worker
asks the same for every child it forks.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any, Callable, Optional

try:
    import resource
except ImportError:  # pragma: no cover - not on this platform
    resource = None  # type: ignore[assignment]

PR_SET_PDEATHSIG = 1


def _find_prctl() -> Optional[Any]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


#: Looked up here, not in the child: between fork and exec only simple calls are safe.
_PRCTL = _find_prctl()


def child_setup(memory_limit: Optional[int] = None) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess``: the child dies with this process and, given
    ``memory_limit`` (bytes), may not map more (as programs run by the worker)."""
    parent = os.getpid()

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # greenfuzz ended before the request took effect
                os._exit(1)
        if memory_limit and resource is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    return setup


def running(pid: int) -> bool:
    """Whether process ``pid`` may still run: what greenfuzz left behind under a pid
    (a temporary file, a zygote's folder) is removed only once this says no.  A pid
    that exists but is not ours to signal counts as running."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
