"""``python -m installsure.config``: print the example configuration (every key)."""

import sys

from installsure.config.doc import render

sys.stdout.write(render())
