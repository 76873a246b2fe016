"""``greenfuzz impls``: the implementations greenfuzz knows, and which run here."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from greenfuzz.harness.cli.common import (
    EXIT_OK,
)
from greenfuzz.harness.envs import catalog
from greenfuzz.harness.judging import differences as profiles


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("impls", help="list the implementations greenfuzz knows and which of "
                                 "them this machine can run")


def run(args: argparse.Namespace, console: Console) -> int:
    table = Table(title="implementations greenfuzz knows")
    for column in ("name", "what", "here", "options"):
        table.add_column(column)
    for known, here in catalog.survey():
        table.add_row(known.name, known.description, here, known.options)
    console.print(table)
    console.print("Any release: greenlet-X.Y.Z (matrix, diff --known) or --greenlet X.Y.Z. "
                  f"Documented differences (--differences): {', '.join(profiles.names())}.")
    return EXIT_OK
