"""benchmarks/train_step.py: the environments its contenders run in, and its table."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("train_step", None)
    import train_step

    return train_step


def test_torch_runs_in_its_own_default_environment_and_in_minirads(monkeypatch):
    script = _script(monkeypatch)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what importing minirad sets
    assert "OMP_WAIT_POLICY" not in script.environment("torch")
    assert "OMP_WAIT_POLICY" not in script.environment("minirad")  # minirad sets its own
    assert script.environment("torch-passive")["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_table_gives_median_min_max_and_the_ratio_to_torch(monkeypatch):
    script = _script(monkeypatch)
    times = {"minirad": [0.3, 0.1, 0.2], "torch": [0.2, 0.4, 0.3], "torch-passive": [0.6]}
    rows = script.table(times, "python benchmarks/train_step.py")
    assert "| minirad | 200.0 | 100.0 | 300.0 | 3 | 0.67x |" in rows
    assert "| torch | 300.0 | 200.0 | 400.0 | 3 | 1.00x |" in rows
    assert "| torch-passive | 600.0 | 600.0 | 600.0 | 1 | 2.00x |" in rows
