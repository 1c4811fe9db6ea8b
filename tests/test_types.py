"""The type checker finds nothing in trainer/ and ui/ (settings: mypy.ini)."""

import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow  # about 10 s with mypy's cache, 30-40 s without
def test_mypy_finds_no_type_errors():
    result = subprocess.run([sys.executable, "-m", "mypy", "trainer", "ui"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert "No module named mypy" not in result.stderr, \
        "mypy is not installed: pip install -r requirements-test.txt"
    assert result.returncode == 0, "mypy reports:\n" + result.stdout + result.stderr
