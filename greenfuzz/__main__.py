"""``python -m greenfuzz``: the same as the ``greenfuzz`` command."""

import sys

from greenfuzz.console import main

sys.exit(main())
