"""``python -m raftkv``: the same entry point as the ``raftkv`` command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
