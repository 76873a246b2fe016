"""The command line: the only place for argparse and terminal output."""

from greenfuzz.harness.cli.common import EXIT_FINDING, EXIT_OK, EXIT_USAGE
from greenfuzz.harness.cli.main import main

__all__ = ["EXIT_FINDING", "EXIT_OK", "EXIT_USAGE", "main"]
