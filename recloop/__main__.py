"""``python -m recloop`` (and ``torchrun -m recloop``) runs the CLI."""

import sys

from recloop.cli import main

sys.exit(main())
