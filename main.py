#!/usr/bin/env python3
"""Runs the node from a checkout, with nothing installed: `python3 main.py`,
`./main.py`, or Maelstrom's `--bin main.py`. Flags: `python3 main.py --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from collapsed_forwarding.node.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
