"""`python -m sessiongraph.cli`: the console script."""

import sys

from sessiongraph.cli import main

if __name__ == "__main__":  # imported alone (tests/test_imports.py), it runs nothing
    sys.exit(main())
