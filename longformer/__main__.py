"""`python -m longformer ...`: the `longformer` command."""

import sys

from .cli import main

sys.exit(main())
