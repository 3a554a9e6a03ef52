"""Style and types are checked like behaviour: ruff (lint and format) and mypy must pass.

The versions are pinned in the `test` extra (pyproject.toml), so a new release of either tool
cannot turn CI red on code that did not change. mypy checks the library (minirad and
minirad.kernels); the benchmark scripts and the tests are linted but not type-checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seeded_bugs import copy_installed_layout

ROOT = Path(__file__).resolve().parents[1]
LINTED = ["minirad", "kernels", "tests", "benchmarks"]


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing():
    pytest.importorskip("ruff")
    result = run_module("ruff", "check", "--no-cache", *LINTED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing():
    pytest.importorskip("ruff")
    result = run_module("ruff", "format", "--check", "--no-cache", *LINTED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing(tmp_path):
    """mypy reads the library as it is installed (kernels/ as minirad.kernels): in the source
    tree it would not find minirad.kernels, and ignore_missing_imports would quietly make every
    kernel an Any."""
    pytest.importorskip("mypy")
    copy_installed_layout(tmp_path / "tree")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
        + ["--cache-dir", str(tmp_path / "cache"), "minirad"],
        cwd=tmp_path / "tree",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
