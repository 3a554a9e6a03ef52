"""Training on a GPU backend, proved on the CPU: the model and each batch stay on the device.

The device stand-in (tests/device_standin.py) plays CuPy: it refuses host arrays in device maths
and counts every copy between host and device. The `cupy` backend then runs the real CUDA C
host code and kernels (in the g++ emulation), `cuda` the Numba CUDA kernels (in the simulator),
so these tests run the same code a GPU would, at tiny model sizes (emulated threads are slow).

The budgets asserted here, per training step of the report model or of the classifier:
    host to device   the batch, once: 3 arrays (images, tokens, findings), 2 for the classifier
    device to host   nothing; the running sums are read every SHOW_EVERY steps and at the end
                     of the epoch, one copy each (minirad.models.running)
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from test_device_decoding import tiny_config

from minirad import backend, kernels
from minirad.models import train_report
from minirad.models.classifier import CNNClassifier
from minirad.models.report_data import ReportArrays
from minirad.models.report_model import ReportModel
from minirad.models.train_classifier import evaluate_accuracy, train_one_epoch
from minirad.models.train_report import TrainConfig, _train_epoch, train_step
from minirad.optim import Adam

device_standin = pytest.importorskip("device_standin")
pytestmark = pytest.mark.skipif(
    not device_standin.installed(), reason="runs on the device stand-in (no real GPU needed)"
)

# The decoding tests' tiny model (every layer present, each a few units wide), with dropout
# on: its masks must be drawn where the activations are.
CONFIG = replace(tiny_config(max_len=6), dropout=0.1)


def tiny_report_model() -> ReportModel:
    return ReportModel(CONFIG, rng=0)


def tiny_batch(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = CONFIG.image_size
    images = rng.random((rows, 1, size, size)).astype(np.float32)
    tokens = rng.integers(4, CONFIG.vocab_size, (rows, CONFIG.max_len))
    tokens[:, 0] = 1  # <bos>
    findings = (rng.random((rows, CONFIG.num_findings)) < 0.3).astype(np.float32)
    return images, tokens, findings


def tiny_arrays(studies: int) -> ReportArrays:
    images, tokens, findings = tiny_batch(studies, np.random.default_rng(3))
    ids = [str(i) for i in range(studies)]
    return ReportArrays(ids, images, tokens, findings, references=["" for _ in ids])


def on_device(name: str):
    """Backend `name` as the engine's, for the test; skipped where it cannot run."""
    reason = kernels.why_unavailable(name)
    if reason:
        pytest.skip(reason)
    return backend.use_backend(name)


def test_a_model_moves_to_the_device_and_back():
    with on_device("cupy"):
        model = tiny_report_model()
        first = model.parameters()[0]
        with device_standin.count_transfers() as moved:
            assert model.to() is model
        assert all(isinstance(p.data, device_standin.ndarray) for p in model.parameters())
        assert moved.h2d == len(model.parameters()) and moved.d2h == 0
        assert model.parameters()[0] is first  # the same Parameter objects: optimizers hold them
        with device_standin.count_transfers() as again:
            model.to()
        assert again.h2d == 0, "a parameter already on the device was copied again"
        model.to("cpu")
        assert all(isinstance(p.data, np.ndarray) for p in model.parameters())


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_a_report_training_step_moves_the_batch_in_and_nothing_out(name):
    """The cuda (simulator) case is one step: slow, but the same budget on the other runtime."""
    with on_device(name):
        model = tiny_report_model().to()
        optimizer = Adam(model.parameters(), lr=1e-2)
        config = TrainConfig(batch_size=2)
        rng = np.random.default_rng(0)
        before = [p.numpy().copy() for p in model.parameters()]
        for warming_up in (True, False) if name == "cupy" else (False,):
            with device_standin.count_transfers(where=True) as moved:
                batch = [backend.to_device(a) for a in tiny_batch(2, rng)]
                words, finding = train_step(model, optimizer, *batch, config, warming_up)
            assert (moved.h2d, moved.d2h) == (3, 0), moved.sites
            assert (words is None) == warming_up
        changed = [
            not np.array_equal(b, p.numpy())
            for b, p in zip(before, model.parameters(), strict=True)
        ]
        assert any(changed), "the step did not update the parameters"


def test_one_report_epoch_reads_back_once_per_show_every_steps(monkeypatch):
    show_every = 2  # the progress bar's period, shortened so that a short epoch shows it twice
    monkeypatch.setattr(train_report, "SHOW_EVERY", show_every)
    with on_device("cupy"):
        model = tiny_report_model().to()
        optimizer = Adam(model.parameters(), lr=1e-2)
        config = TrainConfig(batch_size=2, epochs=1, warmup_epochs=0)
        train = tiny_arrays(studies=9)  # 5 steps, the last one of a single study
        steps = math.ceil(len(train) / config.batch_size)
        with device_standin.count_transfers(where=True) as moved:
            words, findings = _train_epoch(
                model, optimizer, train, config, np.random.default_rng(0), 1
            )
        assert moved.h2d == 3 * steps, moved.sites
        assert moved.d2h == steps // show_every + 1, moved.sites  # the bar, then the means
        assert np.isfinite(words) and np.isfinite(findings)


def test_the_device_epoch_equals_the_host_epoch():
    """Same data, same seed: the same losses and weights on the device as on the host."""
    results = {}
    for name in ("numpy", "cupy"):
        with on_device(name):
            model = tiny_report_model().to()
            optimizer = Adam(model.parameters(), lr=1e-2)
            config = TrainConfig(batch_size=2, epochs=1, warmup_epochs=0)
            losses = _train_epoch(
                model, optimizer, tiny_arrays(4), config, np.random.default_rng(0), 1
            )
            results[name] = losses, [p.numpy() for p in model.parameters()]
    (host_losses, host_weights), (device_losses, device_weights) = results["numpy"], results["cupy"]
    np.testing.assert_allclose(device_losses, host_losses, rtol=1e-5)
    for host, device in zip(host_weights, device_weights, strict=True):
        np.testing.assert_allclose(device, host, rtol=1e-4, atol=1e-5)


def test_a_classifier_epoch_on_the_device():
    with on_device("cupy"):
        rng = np.random.default_rng(0)
        model = CNNClassifier(image_size=8, rng=rng).to()
        optimizer = Adam(model.parameters(), lr=1e-2)
        images = rng.random((4, 1, 8, 8)).astype(np.float32)
        labels = np.array([0, 1, 0, 1])
        with device_standin.count_transfers(where=True) as moved:
            loss, accuracy = train_one_epoch(model, optimizer, images, labels, 2, rng, 0)
        assert (moved.h2d, moved.d2h) == (2 * 2, 1), moved.sites  # 2 batches in, the means out
        assert np.isfinite(loss) and 0 <= accuracy <= 1
        with device_standin.count_transfers() as moved:
            assert 0 <= evaluate_accuracy(model, images, labels, batch_size=2) <= 1
        assert (moved.h2d, moved.d2h) == (2 * 2, 1)


def test_host_arrays_in_device_maths_are_refused():
    """The stand-in is strict where CuPy is: the tests above would fail on a hidden host array."""
    with on_device("cupy"):
        device = backend.to_device(np.ones(3))
        with pytest.raises(TypeError, match="host array"):
            device + np.ones(3)
        with pytest.raises(TypeError, match="Implicit conversion"):
            np.asarray(device)
        with pytest.raises(TypeError):
            np.exp(device)
        with pytest.raises(ValueError, match="got numpy.ndarray"):
            kernels.get("cupy").linear_forward(np.ones((2, 3)), device.reshape(1, 3), None)


def test_host_targets_of_device_logits_are_checked_before_the_upload():
    """The contract does not read device targets back; cross_entropy checks host ones first."""
    from minirad import functional as F
    from minirad.autograd import Tensor

    with on_device("cupy"):
        logits = Tensor(backend.to_device(np.zeros((2, 5), dtype=np.float32)))
        with pytest.raises(ValueError, match="^targets: class id 9 is outside"):
            F.cross_entropy(logits, np.array([0, 9]))
