"""`python -m sessiongraph.cli`: the console script."""

import sys

from sessiongraph.cli import main

if __name__ == "__main__":
    sys.exit(main())
