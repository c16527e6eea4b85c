"""``python -m integration.local``: run the whole local stack in the foreground (see ``stack.py``; ``--help``)."""

import sys

from integration.local.stack import main

if __name__ == "__main__":
    sys.exit(main())
