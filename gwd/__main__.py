"""``python -m gwd`` is the ``gwd`` command."""

import sys

from gwd.cli import main

sys.exit(main())
