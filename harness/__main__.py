"""``python -m harness``: the same as the ``greenfuzz`` command."""

import sys

from harness.cli import main

sys.exit(main())
