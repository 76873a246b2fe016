"""``python -m greenfuzz``: the same as the ``greenfuzz`` command."""

import sys

from greenfuzz.harness.cli import main

sys.exit(main())
