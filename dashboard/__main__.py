"""`python -m dashboard ...`: the same command line as run.py."""

import sys

from dashboard.service.cli import main

sys.exit(main(prog="python -m dashboard"))
