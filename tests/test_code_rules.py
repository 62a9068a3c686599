"""The code's own rules, checked with every test run: the layering (import-linter
contracts in pyproject.toml), lint and format (ruff), and types (mypy; strict for
the pure bottom and the config). A leak between layers fails here, not in review."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CHECKS = {
    "layers": ["lint-imports"],
    "lint": ["ruff", "check", "."],
    "format": ["ruff", "format", "--check", "."],
    "types": ["mypy"],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_code_keeps_its_rules(name):
    command = CHECKS[name]
    tool = BIN / command[0] if (BIN / command[0]).exists() else shutil.which(command[0])
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{command[0]} is not installed (it comes with the test extra)")
        pytest.skip(f"{command[0]} is not installed (it comes with the test extra)")
    result = subprocess.run([str(tool), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
