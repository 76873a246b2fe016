"""``greenfuzz profile``: bytes per greenlet, measured and reported."""

from __future__ import annotations

import argparse

from rich.console import Console

from greenfuzz.harness.cli.common import (
    UsageError,
    positive,
)
from greenfuzz.harness.reporting import memprofile
from greenfuzz.harness.search import scale

#: Deepest Python recursion a parked greenlet may take (the default recursion limit is
#: 1000 and the measuring code needs some), and through C (each level costs C stack).
MAX_DEPTH = {"--depths": 900, "--c-depths": 100}
#: Generous bytes one parked greenlet may need (greenlet 3.5.6 takes about 6 KiB at
#: depth 0), to refuse counts that cannot fit in memory before anything runs.
BYTES_PER_GREENLET = 16 << 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    memprofile.add_parser(sub, positive)


def run(args: argparse.Namespace, console: Console) -> int:
    """``greenfuzz profile`` (``greenfuzz.harness.reporting.memprofile``): exit 1 when a target
    could not be
    measured or the plain script disagrees with the harness."""
    check(args)
    try:
        return memprofile.run(args, console)
    except memprofile.ProfileError as e:
        raise UsageError(str(e)) from None


def check(args: argparse.Namespace) -> None:
    """Refuse sizes that can only fail, before any measurement (``UsageError``)."""
    if any(n < 1 for n in args.counts):
        raise UsageError("--counts must all be at least 1 (a count of 0 greenlets measures "
                         "nothing)")
    if len(set(args.counts)) < 2:
        raise UsageError("--counts needs at least two different counts (bytes per greenlet "
                         "is the slope between them)")
    have = scale.available_bytes()
    for option, values in (("--counts", args.counts), ("--depth-count", [args.depth_count])):
        need = max(values) * BYTES_PER_GREENLET
        if need > have:
            raise UsageError(f"{option} {max(values):,} greenlets need about "
                             f"{need / 2**30:.1f} GiB; {have / 2**30:.1f} GiB is available")
    for option, values in (("--depths", args.depths), ("--c-depths", args.c_depths)):
        if values and max(values) > MAX_DEPTH[option]:
            raise UsageError(f"{option} must be at most {MAX_DEPTH[option]}, not "
                             f"{max(values)}")
