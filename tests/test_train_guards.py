"""Training refuses what would make a silently wrong model (issue 15).

A non-finite loss stops the run and keeps the last good checkpoint; a resume says what it
changes and refuses other data; an interrupted run names only files it wrote; `evaluate
--limit` must be a count. Tiny data at 32 pixels, as in test_report_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import minirad.models.train_report as train_module
from minirad.cli import main
from minirad.data.synth import synthesize_dataset
from minirad.models.report_checkpoint import load_report_model
from minirad.models.train_report import (
    TrainConfig,
    TrainingDivergedError,
    last_path,
    train_report_model,
)

TINY = dict(image_size=32, batch_size=8, val_limit=3, max_len=80, warmup_epochs=1)


def silent(message):
    pass


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return synthesize_dataset(tmp_path_factory.mktemp("data") / "phantoms", n=30, seed=5, size=64)


@pytest.mark.parametrize(
    "flag, value, reason",
    [
        ("--lr", "inf", "--lr: must be a finite number > 0, got inf"),
        ("--finding-weight", "nan", "--finding-weight: must be a finite number >= 0, got nan"),
    ],
)
def test_a_rate_or_weight_that_is_not_finite_is_refused(tmp_path, capsys, flag, value, reason):
    command = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz")]
    assert main([*command, flag, value]) == 1
    assert capsys.readouterr().err.strip() == f"minirad: error: {reason}"


def test_a_loss_that_is_not_finite_stops_training_and_keeps_the_last_good_epoch(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    real_step = train_module.train_step

    def nan_in_epoch_2(model, optimizer, images, tokens, findings, config, warming_up=False):
        words, finding = real_step(model, optimizer, images, tokens, findings, config, warming_up)
        if not warming_up:  # epoch 2: the first after the warm-up
            finding.data = finding.data * np.nan
        return words, finding

    monkeypatch.setattr(train_module, "train_step", nan_in_epoch_2)
    out = tmp_path / "m.npz"
    command = ["train", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "2"]
    tiny = ["--image-size", "32", "--batch-size", "8", "--val-limit", "3", "--warmup-epochs", "1"]
    assert main([*command, *tiny]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "minirad: error: training stopped at epoch 2, by batch 3: the finding loss is nan "
        "(a learning rate too high, or a weight that is not finite); "
        f"{out} and {last_path(out)} keep epoch 1"
    )
    for path in (out, last_path(out)):
        model, _, meta = load_report_model(path)
        assert meta["info"]["epoch"] == 1
        assert all(np.isfinite(p.data).all() for p in model.parameters())
    no_warm_up = TrainConfig(epochs=2, **{**TINY, "warmup_epochs": 0})  # NaN in epoch 1
    with pytest.raises(TrainingDivergedError, match="epoch 1, .*; no checkpoint was written$"):
        train_report_model(tiny_dataset, tmp_path / "n.npz", no_warm_up, log=silent)
    assert not (tmp_path / "n.npz").exists()


def test_a_resume_refuses_other_data_and_says_what_else_it_changes(tiny_dataset, tmp_path):
    out = tmp_path / "m.npz"
    train_report_model(tiny_dataset, out, TrainConfig(epochs=1, **TINY), log=silent)
    other = synthesize_dataset(tmp_path / "other", n=30, seed=6, size=64)
    with pytest.raises(ValueError, match=r"^resume: .*m\.npz\.last\.npz was trained on the data"):
        train_report_model(other, out, TrainConfig(epochs=2, **TINY), resume=True, log=silent)
    said = []
    config = TrainConfig(epochs=2, **TINY)
    train_report_model(tiny_dataset, out, config, resume=True, log=said.append)
    assert f"resuming {last_path(out)} after epoch 1 with epochs 2 (was 1)" in said
    _, _, meta = load_report_model(last_path(out))
    assert meta["info"]["resumed"] == [{"after_epoch": 1, "changed": {"epochs": [1, 2]}}]
    assert meta["info"]["train"]["epochs"] == 2


def test_an_interrupted_first_epoch_names_no_curves_it_did_not_write(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_train_epoch", interrupted)
    out = tmp_path / "m.npz"
    command = ["train", "--data", str(tiny_dataset), "--out", str(out), "--image-size", "32"]
    assert main(command) == 130
    printed = capsys.readouterr().out
    assert f"interrupted in epoch 1: {out} holds the weights so far; no curves yet" in printed
    assert "curves.png" not in printed and not out.with_name("m.npz.curves.png").exists()


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_evaluate_limit_must_be_a_count(tiny_dataset, capsys, limit):
    assert main(["evaluate", "--data", str(tiny_dataset), "--limit", limit]) == 1
    assert capsys.readouterr().err.strip() == (
        f"minirad: error: --limit: must be >= 1 (the number of studies to score), got {limit}"
    )
