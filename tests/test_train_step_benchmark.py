"""benchmarks/train_step.py: the environments its contenders run in, its phases, its table, and
the PyTorch twin's greedy decoding (the same words as minirad's from the same weights)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from minirad.autograd import Tensor, no_grad
from minirad.models.report_model import ReportModel
from minirad.report.decoding import greedy

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("train_step", None)
    import train_step

    return train_step


def test_torch_runs_in_its_own_default_environment_and_in_minirads(script, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what importing minirad sets
    assert "OMP_WAIT_POLICY" not in script.environment("torch")
    assert "OMP_WAIT_POLICY" not in script.environment("minirad")  # minirad sets its own
    assert script.environment("torch-passive")["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_table_gives_median_min_max_and_the_ratio_to_torch(script):
    times = {
        "step": {"minirad": [0.3, 0.1, 0.2], "torch": [0.2, 0.4, 0.3], "torch-passive": [0.6]},
        "greedy-1": {"minirad": [0.01], "torch": [0.02], "torch-passive": [0.04]},
    }
    words = {"greedy-1": {"minirad": "00ab", "torch": "00ab", "torch-passive": "00ab"}}
    rows = script.table(times, "python benchmarks/train_step.py", words)
    assert "| step | minirad | 200.0 | 100.0 | 300.0 | 3 | 0.67x |" in rows
    assert "| step | torch | 300.0 | 200.0 | 400.0 | 3 | 1.00x |" in rows
    assert "| step | torch-passive | 600.0 | 600.0 | 600.0 | 1 | 2.00x |" in rows
    assert "| greedy-1 | minirad | 10.0 | 10.0 | 10.0 | 1 | 0.50x |" in rows
    assert "greedy-1: minirad and torch wrote the same words (00ab)." in rows
    words["greedy-1"]["torch"] = "ffff"
    assert any("DIFFERENT words" in row for row in script.table(times, "c", words))


def test_the_section_replaces_its_last_version_and_nothing_else(script, tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Title\n\n{script.SECTION}\n\nold table\n\n### Next\n\nkept\n")
    script.write_section(path, [script.SECTION, "", "new table"])
    text = path.read_text()
    assert "old table" not in text and "new table" in text
    assert text.index("new table") < text.index("### Next") and text.endswith("kept\n")
    script.write_section(tmp_path / "new.md", [script.SECTION, "", "first"])
    assert "first" in (tmp_path / "new.md").read_text()


ENCODER_SIDE = ("encoder.", "summary.", "finding_head.")


def trained_names(named_grads) -> set[str]:
    """The parameters given a nonzero gradient, by name."""
    return {name for name, grad in named_grads if grad is not None and np.abs(grad).max() > 0}


@pytest.mark.parametrize("phase", ["encoder", "decoder"])
def test_the_halves_of_a_step_train_the_halves_of_the_model(script, phase):
    """The encoder phase's call trains the image side only and the decoder phase's the text
    side only (its inputs are the encoder's outputs as constants), on both contenders.
    (Seeded torch, so that a failure repeats.)"""
    import gpu

    torch = pytest.importorskip("torch")
    config = gpu.model_config("tiny")
    batch = gpu.report_batch(config, 2)
    torch.manual_seed(0)
    call = script._minirad_training(phase, config, batch)
    call()
    ours = trained_names((n, p.grad) for n, p in call.model.named_parameters())
    torch_call = script._torch_training(phase, config, batch)
    torch_call()
    theirs = trained_names(
        (n, None if p.grad is None else p.grad.numpy())
        for n, p in torch_call.model.named_parameters()
    )
    # Which of a tiny model's layers train depends on its draw of dead ReLUs, and each side
    # draws its own weights; the last bias of the phase's half always trains.
    always = "finding_head.bias" if phase == "encoder" else "output.bias"
    for side, names in (("minirad", ours), ("torch", theirs)):
        assert always in names, f"{side}: {always} has no gradient"
        on_encoder_side = {name.startswith(ENCODER_SIDE) for name in names}
        assert on_encoder_side == {phase == "encoder"}, f"{side}: {sorted(names)}"


def test_the_torch_twin_writes_minirads_greedy_words(script):
    import gpu

    torch = pytest.importorskip("torch")
    from torch_report_model import TorchReportModel, torch_greedy

    config = gpu.model_config("tiny")
    ours = ReportModel(config, rng=3, dtype=np.float64).eval()
    theirs = TorchReportModel(config).double().eval()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    images = gpu.report_batch(config, 5)[0].astype(np.float64)
    with no_grad():
        expected = [d.tokens for d in greedy(ours, ours.encode(Tensor(images)), config.max_len)]
    assert torch_greedy(theirs, torch.from_numpy(images), config.max_len) == expected
    assert len({len(tokens) for tokens in expected}) > 1 or expected[0]  # words, not nothing
