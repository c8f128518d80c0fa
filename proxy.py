"""The library from a checkout: `from proxy import CollapsedForwardingProxy`.

Installed, the same names come from `collapsed_forwarding`; this file is not installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from collapsed_forwarding import *  # noqa: E402,F403
from collapsed_forwarding import __all__  # noqa: E402,F401
