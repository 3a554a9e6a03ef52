"""The familiarity score, the temperatures, where they are stored, and what the reporter does
with them: unfamiliar images flagged, non-finite outputs refused, JSON always valid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_report_model import WORDS, tiny

from minirad.data.findings import FINDINGS
from minirad.data.vocab import SPECIALS, Vocabulary
from minirad.models.report_checkpoint import (
    add_review_statistics,
    load_report_model,
    review_statistics,
    save_report_model,
)
from minirad.nn import checkpoint
from minirad.report.evaluation import calibration_scores, reliability_png
from minirad.report.familiarity import Calibration, Familiarity, fit_temperature
from minirad.report.pipeline import Reporter, default_model_path
from minirad.report.review import UNFAMILIAR, NonFiniteOutputError

rng = np.random.default_rng(0)


def test_the_threshold_flags_the_chosen_fraction_of_held_out_data_and_far_points():
    train = [rng.normal(size=(2000, 5)), rng.normal(size=(2000, 3))]
    held_out = [rng.normal(size=(1000, 5)), rng.normal(size=(1000, 3))]
    familiarity = Familiarity.fit(train, held_out, quantile=0.95)
    assert familiarity.false_alarm_rate == pytest.approx(0.05, abs=0.002)
    unseen = np.concatenate([rng.normal(size=(1000, 5)), rng.normal(size=(1000, 3))], axis=1)
    assert np.mean(familiarity.score(unseen) > familiarity.threshold) == pytest.approx(
        0.05, abs=0.03
    )
    # Each block's distance is divided by its size: a typical image has d^2 ~ 1.
    assert np.mean(familiarity.score(unseen) ** 2) == pytest.approx(1.0, abs=0.1)
    # Far out in the second block only: its own block's distance says so.
    far = np.concatenate([np.zeros((1, 5)), np.full((1, 3), 6.0)], axis=1)
    assert familiarity.score(far)[0] > 2 * familiarity.threshold


def test_a_feature_constant_in_training_keeps_the_distance_finite():
    train = rng.normal(size=(100, 4))
    train[:, 2] = 0.0  # a ReLU that never fired
    familiarity = Familiarity.fit([train], [rng.normal(size=(50, 4)) * [1, 1, 0, 1]])
    assert np.isfinite(familiarity.precision).all() and np.isfinite(familiarity.threshold)
    score = familiarity.score(np.array([[0, 0, 1.0, 0]]))[0]
    assert np.isfinite(score) and score > 10 * familiarity.threshold


def test_temperature_scaling_recovers_the_temperature_and_keeps_every_decision():
    true_logits = rng.normal(0, 2, size=20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.05)
    logits = np.stack([3.0 * true_logits, 0.5 * true_logits], axis=1)
    calibration = Calibration.fit(logits, np.stack([labels, labels], axis=1))
    np.testing.assert_allclose(calibration.temperatures, [3.0, 0.5], rtol=0.05)
    before = 1 / (1 + np.exp(-logits))
    assert np.array_equal(calibration.probabilities(logits) >= 0.5, before >= 0.5)


def test_perfectly_separated_validation_data_gives_a_finite_temperature():
    logits = np.array([-9.0, -8.0, -10.0, 9.0, 11.0, 8.5])
    temperature = fit_temperature(logits, np.array([0, 0, 0, 1, 1, 1]))
    assert 0.5 < temperature < 10  # Platt's targets: without them T -> 0


def statistics(M):
    F, K = M + 6, len(FINDINGS)
    familiarity = Familiarity(np.zeros(F), np.ones(F), np.eye(F) / F, 1.5, 0.01)
    return familiarity, Calibration(np.full(K, 2.0))


def test_review_statistics_are_added_beside_weights_that_stay_bit_identical(tmp_path):
    path = tmp_path / "m.npz"
    save_report_model(path, tiny(), Vocabulary(SPECIALS + WORDS))
    before = checkpoint.load(path)
    assert review_statistics(load_report_model(path)[2]) == (None, None)
    add_review_statistics(path, *statistics(M=8))
    after = checkpoint.load(path)
    for name, value in before.items():
        assert after[name].dtype == value.dtype and np.array_equal(after[name], value), name
    familiarity, calibration = review_statistics(load_report_model(path)[2])
    assert familiarity.threshold == 1.5 and familiarity.false_alarm_rate == 0.01
    np.testing.assert_array_equal(calibration.temperatures, np.full(len(FINDINGS), 2.0))


def tiny_reporter(tmp_path, finding_bias=None) -> Reporter:
    model = tiny(vocab_size=len(SPECIALS) + len(WORDS))
    if finding_bias is not None:
        model.finding_head.bias.data[...] = finding_bias
    path = tmp_path / "m.npz"
    save_report_model(path, model, Vocabulary(SPECIALS + WORDS))
    add_review_statistics(path, *statistics(M=8))
    return Reporter(path)


def test_a_finding_head_holding_nan_refuses_the_report(tmp_path):
    reporter = tiny_reporter(tmp_path, finding_bias=np.nan)
    with pytest.raises(NonFiniteOutputError, match="finding logits hold 9 non-finite"):
        reporter.report_image(np.full((16, 16), 0.5), method="greedy")


def test_every_report_carries_the_score_and_the_threshold_in_valid_json(tmp_path):
    reporter = tiny_reporter(tmp_path)
    report = reporter.report_image(np.random.default_rng(3).random((16, 16)), method="greedy")
    familiarity = report.to_dict()["review"]["familiarity"]
    assert familiarity["threshold"] == 1.5 and familiarity["score"] > 0
    assert "threshold 1.50" in report.review.familiarity_line()
    report.probabilities["edema"] = float("nan")  # a Report made by hand: still valid JSON
    json.dumps(report.to_dict(), allow_nan=False)


def test_calibration_scores_and_the_reliability_diagram(tmp_path):
    model = tiny()
    path = tmp_path / "m.npz"
    save_report_model(path, model, Vocabulary(SPECIALS + WORDS))
    add_review_statistics(path, *statistics(M=8))
    model, _, meta = load_report_model(path)
    images = np.random.default_rng(1).random((20, 1, 16, 16)).astype(np.float32)
    findings = (np.random.default_rng(2).random((20, len(FINDINGS))) < 0.3).astype(float)
    scores = calibration_scores(model, meta, images, findings)
    assert scores["calibrated"] and scores["decisions_unchanged"]
    assert scores["ece_before"] != scores["ece_after"]
    assert reliability_png(scores).startswith(b"\x89PNG")


@pytest.mark.skipif(not default_model_path().is_file(), reason="no bundled weights")
def test_the_bundled_model_flags_a_blank_image_and_accepts_the_look_of_a_phantom():
    from minirad.data.phantom import synthesize

    reporter = Reporter()
    assert reporter.familiarity is not None and reporter.calibration is not None
    blank = reporter.report_image(np.full((128, 128), 0.5), method="greedy")
    assert blank.review.verdict == "needs review" and UNFAMILIAR in blank.review.reasons
    ((image, _),) = synthesize(1, seed=99, size=128)
    phantom = reporter.report_image(image / 255.0, method="greedy")
    assert UNFAMILIAR not in phantom.review.reasons


def test_training_stores_the_statistics_in_the_best_model(tmp_path):
    from minirad.data.synth import synthesize_dataset
    from minirad.models.train_report import TrainConfig, train_report_model

    data = synthesize_dataset(tmp_path / "phantoms", n=12, seed=5, size=32)
    config = TrainConfig(epochs=1, image_size=32, batch_size=8, val_limit=3, max_len=80,
                         warmup_epochs=1)  # fmt: skip
    train_report_model(data, tmp_path / "m.npz", config, log=lambda line: None)
    familiarity, calibration = review_statistics(load_report_model(tmp_path / "m.npz")[2])
    assert familiarity is not None and np.isfinite(familiarity.threshold)
    assert calibration.temperatures.shape == (len(FINDINGS),)
