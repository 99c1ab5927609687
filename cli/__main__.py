"""`python -m sessiongraph.cli`: the console script."""

import sys

from sessiongraph.cli import main

sys.exit(main())
