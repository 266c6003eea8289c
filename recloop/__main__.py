"""``python -m recloop`` (and ``torchrun -m recloop``) runs the CLI.

Nothing here may import torch before ``main()`` has set the OpenMP wait policy
(``recloop.cli`` imports torch only inside commands)."""

import sys

from recloop.cli import main

sys.exit(main())
