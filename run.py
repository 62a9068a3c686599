#!/usr/bin/env python3
"""The checkout's entry point: `python run.py [serve|check|migrate|import|hash-password|notify-test|tail] ...`."""

import sys

from dashboard.service.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="run.py"))
