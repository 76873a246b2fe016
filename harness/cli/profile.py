"""``greenfuzz profile``: bytes per greenlet, measured and reported."""

from __future__ import annotations

import argparse

from rich.console import Console

from greenfuzz.harness.cli.common import (
    UsageError,
    positive,
)
from greenfuzz.harness.reporting import memprofile


def add_parser(sub: argparse._SubParsersAction) -> None:
    memprofile.add_parser(sub, positive)


def run(args: argparse.Namespace, console: Console) -> int:
    """``greenfuzz profile`` (``greenfuzz.harness.reporting.memprofile``): exit 1 when a target
    could not be
    measured or the plain script disagrees with the harness."""
    try:
        return memprofile.run(args, console)
    except memprofile.ProfileError as e:
        raise UsageError(str(e)) from None
