"""benchmarks/gpu.py runs where no GPU is: its dry run, its time budget, its PyTorch peer.

On a GPU the script times the GPU backends against torch.cuda; here `--dry-run` runs the same
code on the `numpy` backend against torch on the CPU at tiny shapes, so the table, the budget and
the training step are exercised in CI. The peer must compute what minirad computes, or the
ratios compare different work: the PyTorch mirror of the report model gives the same loss and
gradients from the same weights.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from minirad.autograd import Tensor
from minirad.models.report_model import ReportModel, report_loss
from minirad.nn.module import Module

torch = pytest.importorskip("torch")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu_script(monkeypatch):
    """benchmarks/gpu.py as a module (benchmarks/ on the path, as when run as a script)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu

    return gpu


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_mirror_gives_minirads_loss_and_gradients(cell, gpu_script):
    from dataclasses import replace

    from torch_report_model import TorchReportModel, torch_report_loss

    config = replace(gpu_script.model_config("tiny"), cell=cell)
    ours = ReportModel(config, rng=0, dtype=np.float64).eval()
    theirs = TorchReportModel(config).double().eval()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    images, tokens, findings = (a.astype(np.float64) if a.dtype == np.float32 else a
                                for a in gpu_script.report_batch(config, 3))  # fmt: skip

    word_logits, finding_logits = ours(Tensor(images), tokens, findings)
    loss, _, _ = report_loss(word_logits, finding_logits, tokens[:, 1:], findings)
    loss.backward()
    t_images, t_tokens, t_findings = (torch.from_numpy(a) for a in (images, tokens, findings))
    t_word_logits, t_finding_logits = theirs(t_images, t_tokens, t_findings)
    t_loss = torch_report_loss(t_word_logits, t_finding_logits, t_tokens[:, 1:], t_findings)
    t_loss.backward()

    assert abs(float(loss.data) - t_loss.item()) < 1e-10 * abs(t_loss.item())
    grads = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        expected = grads[name].grad
        expected = np.zeros(parameter.shape) if expected is None else expected.numpy()
        got = np.zeros(parameter.shape) if parameter.grad is None else parameter.grad
        assert np.allclose(got, expected, rtol=1e-8, atol=1e-12), f"d loss / d {name} ({cell})"


def test_dry_run_writes_one_row_per_version_and_the_training_step(gpu_script, tmp_path):
    from minirad import kernels

    out = tmp_path / "results.md"
    assert gpu_script.main(["--dry-run", "--budget-s", "10", "--reps", "3", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `python benchmarks/gpu.py --dry-run`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    versions = kernels.get("numpy").versions
    expected = sum(len(versions[family]) for _, family, _ in gpu_script.TINY_CASES) + 1
    assert len(rows) == 1 + expected, text  # the header, the ops, one training step
    assert "report model train step" in rows[-1]
    for line in rows[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        median, low, high = (float(c) for c in cells[3:6])
        assert low <= median <= high, line
        assert re.fullmatch(r"\d+\.\d\dx", cells[-1]), f"no ratio to torch: {line}"


def test_measure_keeps_min_reps_and_the_cap(gpu_script):
    calls = []
    timing = gpu_script.measure(lambda: calls.append(1), lambda: None, reps=50, seconds=0.0)
    assert timing.reps == gpu_script.MIN_REPS and len(calls) == 1 + gpu_script.MIN_REPS
    slept = gpu_script.measure(lambda: time.sleep(0.001), lambda: None, reps=5, seconds=10.0)
    assert slept.reps == 5 and slept.min_ms >= 1.0


def test_budget_is_shared_among_the_measurements_left(gpu_script):
    budget = gpu_script.Budget(10.0, 4)
    assert 2.4 < budget.next_share() <= 2.5
    assert 3.2 < budget.next_share() <= 10 / 3


def test_training_step_needs_the_device_api_or_runs_on_a_device_backend(gpu_script):
    """The step on cuda_c_cpu (the .cu kernels emulated): where Module.to is not there yet,
    a clear error instead of a wrong measurement."""
    from minirad import kernels

    if kernels.why_unavailable("cuda_c_cpu"):
        pytest.skip(kernels.why_unavailable("cuda_c_cpu"))
    config = gpu_script.model_config("tiny")
    batch = gpu_script.report_batch(config, 2)
    if not hasattr(Module, "to"):
        with pytest.raises(NotImplementedError, match=r"Module\.to"):
            gpu_script.training_step("cuda_c_cpu", config, batch)
        return
    gpu_script.training_step("cuda_c_cpu", config, batch)()


def test_a_failing_workload_becomes_a_note_not_a_crash(gpu_script):
    def broken():
        raise RuntimeError("CUDA_ERROR_LAUNCH_FAILED")

    notes: list[str] = []
    target, budget = gpu_script.dry_run_target(), gpu_script.Budget(1.0, 1)
    assert gpu_script.timed_or_note(broken, target, 3, budget, notes, "conv2d on cupy") is None
    assert notes == ["conv2d on cupy: failed: RuntimeError: CUDA_ERROR_LAUNCH_FAILED"]
