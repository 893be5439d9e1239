"""``python -m moontwist.sim``."""

import sys

from .cli import main

sys.exit(main())
