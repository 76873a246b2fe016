"""What every command shares: exit statuses, usage errors, option types, the
implementation options and the check of the implementation before a run."""

from __future__ import annotations

import argparse
import math
import platform
import re
import sys
from typing import NoReturn, Optional, Tuple

from greenfuzz.harness.envs import arch, catalog, envs
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import differences as profiles
from greenfuzz.harness.program.ir import FAMILIES
from greenfuzz.harness.program.schema import MAX_GREENLETS
from greenfuzz.harness.search.campaign import (
    CampaignConfig,
)

#: Exit statuses of every command: nothing found, a confirmed finding, bad usage or
#: input (one line on stderr), an internal error (one line; details in a crash file),
#: and interrupted by SIGINT / SIGTERM (128 + the signal, as shells report it).
EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

#: Limits of the numeric options, by option name (least, most; None: no limit but
#: positive).  A program needs a forked child and a few switches: below 0.25 s a time
#: limit measures the machine's load, not the implementation, so hangs would be false
#: (0.25 s is also the shortest limit shrinking uses: ``campaign.hang_timeout``).
BOUNDS = {
    "--timeout": (0.25, 3600.0),
    "--budget": (None, 7 * 24 * 3600.0),
    "--stall": (1.0, 7 * 24 * 3600.0),
    "--memory-share": (None, 1.0),
    "--parked-budget": (1.0, float(1 << 30)),
    "--max-examples": (None, 10**12),
    "--jobs": (None, 1024),
    "--max-greenlets": (None, MAX_GREENLETS),
    "--programs-per-child": (None, 100_000),
    "--depth-count": (None, 1_000_000),
    "--greenlets": (None, 10**9),
    "--wave": (None, 10**9),
}


class UsageError(Exception):
    """Bad usage or bad input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def positive(kind: type, what: str):
    """An option type: a finite number above zero, within ``BOUNDS[what]``."""
    least, most = BOUNDS.get(what, (None, None))

    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        if least is not None and value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least:g}, not {text}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:g}, not {text}")
        return value

    return parse


def shrink_seconds(budget: float) -> float:
    """How long each shrinking pass may take: shrinking may run past the budget, each
    pass at most half of it (10-60 s)."""
    return min(60.0, max(10.0, budget / 2))


def greenlet_version(text: str) -> str:
    """An option type: a greenlet release number (``3.0.3``, ``2.0.0a1``)."""
    if not envs.VERSION.match(text):
        raise argparse.ArgumentTypeError(
            f"needs a release number such as 3.0.3, not {text!r}")
    return text


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def impl_spec(text: str) -> str:
    """An option type: an importable module name or a path to a ``.py`` file."""
    if not (text.endswith(".py") or _MODULE.fullmatch(text)):
        raise argparse.ArgumentTypeError(
            f"needs a module name or a path to a .py file, not {text!r}")
    return text


def families_option(text: str) -> Tuple[str, ...]:
    """``a,b`` chooses families; ``-a,-b`` means all but those."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    off = [name[1:] for name in names if name.startswith("-")]
    if off and len(off) != len(names):
        raise argparse.ArgumentTypeError("--families either chooses families (a,b) or "
                                         "switches them off (-a,-b), not both")
    unknown = [name for name in (off or names) if name not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
            f"choose from {','.join(FAMILIES)}" if names else
            f"needs at least one of {','.join(FAMILIES)}")
    chosen = tuple(f for f in FAMILIES if (f not in off if off else f in names))
    if not chosen:
        raise argparse.ArgumentTypeError("switches every family off; leave at least one "
                                         "of " + ",".join(FAMILIES))
    return chosen


def add_impl_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impl", default="greenlet", type=impl_spec,
        help="implementation: an importable module name or a path to a .py file "
             "(default: greenlet)")
    parser.add_argument("--timeout", type=positive(float, "--timeout"), default=2.0,
                        help="seconds one program may run before it counts as a hang")
    parser.add_argument("--python", default=None, metavar="PATH",
                        help="run the programs under this interpreter (it needs only the "
                             "implementation installed; generation, the model and "
                             "shrinking stay here)")
    parser.add_argument("--greenlet", default=None, metavar="VERSION", type=greenlet_version,
                        help="run the programs on this greenlet release from the package "
                             "index, in a cached virtual environment of --python (see "
                             "'greenfuzz env')")
    parser.add_argument("--arch", default=None, choices=sorted(arch.CPUS), metavar="ARCH",
                        help="run the programs on another CPU under qemu user-mode "
                             f"emulation ({', '.join(arch.CPUS)}; see 'greenfuzz env "
                             "--arch'); --timeout is then multiplied by "
                             f"{arch.SLOWDOWN:g}")
    parser.add_argument("--known", default=None, metavar="NAME",
                        help="an implementation from 'greenfuzz impls' (sets --impl and "
                             "--python; its environment is made on first use)")
    parser.add_argument("--differences", default=None, metavar="NAME|PATH",
                        help="documented differences of the implementation (bundled: "
                             f"{', '.join(profiles.names())}, or a .json file): divergences "
                             "they explain are reported as known, not as findings")
    parser.add_argument("--in-process", action="store_true",
                        help="run programs in this process (faster; for trusted "
                             "implementations: a crash ends the harness)")


def prepare(args: argparse.Namespace, **extra
             ) -> Tuple[CampaignConfig, Optional[IsolatedExecutor]]:
    """Check the implementation, here or in the started worker that is returned to run
    the programs (None in-process); the caller closes it."""
    if args.in_process and (args.python or args.greenlet or args.known):
        other = "--python" if args.python else "--greenlet" if args.greenlet else "--known"
        raise UsageError("--in-process runs programs in this interpreter; it cannot be "
                         f"combined with {other}")
    if args.known:
        if args.python or args.greenlet or args.impl != "greenlet":
            raise UsageError("--known sets the implementation and interpreter; it cannot be "
                             "combined with --impl, --python or --greenlet")
        try:
            target = catalog.resolve(args.known)
        except KeyError:
            raise UsageError(f"unknown implementation name {args.known!r}; see "
                             "'greenfuzz impls'") from None
        except catalog.Unavailable as e:
            raise UsageError(f"{args.known}: {e}") from None
        args.impl, args.python = target.impl, target.python
    memory_limit: Optional[int] = 4 << 30
    if getattr(args, "arch", None):
        if args.python or args.known:
            raise UsageError("--arch runs the target's own python3; it cannot be combined "
                             f"with {'--python' if args.python else '--known'}")
        try:
            args.python = arch.prepare(args.arch, args.greenlet)
        except arch.ArchError as e:
            raise UsageError(str(e)) from None
        args.greenlet = None  # installed into the target by arch.prepare
        args.timeout *= arch.SLOWDOWN
        memory_limit = None  # qemu's own mappings count against RLIMIT_AS
    try:
        if args.greenlet:
            args.python = envs.greenlet_python(args.greenlet, args.python)
        elif args.python:
            args.python = envs.find_interpreter(args.python)
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    executor = None
    try:
        if args.in_process:
            impl = implementations.load(args.impl)
        else:
            executor = IsolatedExecutor(
                args.impl, python=args.python or sys.executable, timeout=args.timeout,
                memory_limit=memory_limit,
                programs_per_child=getattr(args, "programs_per_child", 1))
            executor.start()
            impl = implementations.from_worker(args.impl, executor.info, args.python or "")
    except implementations.ImplementationError as e:
        if executor is not None:
            executor.close()
        hint = ""
        if "No module named 'greenlet'" in str(e) and not args.greenlet:
            hint = "; add --greenlet VERSION to use a release from the package index"
        raise UsageError(f"{e}{hint}") from None
    profile = None
    if args.differences:
        try:
            profile = profiles.load(args.differences)
        except profiles.ProfileError as e:
            if executor is not None:
                executor.close()
            raise UsageError(str(e)) from None
    # Documented changes between greenlet releases are known, not findings.
    profile = profiles.with_release(
        profile, impl.spec, impl.version,
        executor.info.get("python", "") if executor is not None else platform.python_version())
    config = CampaignConfig(impl=impl, python=args.python, isolate=not args.in_process,
                            profile=profile,
                            verify=not getattr(args, "no_verify", True),
                            timeout=args.timeout, **extra)
    return config, executor
