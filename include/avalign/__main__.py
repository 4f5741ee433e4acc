"""``python -m avalign``."""

import sys

from avalign.cli import main

sys.exit(main())
