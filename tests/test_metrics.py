"""The metrics: word overlap equal to pycocoevalcap's, and clinical scores checked by hand.

(a) nlg_scores against pycocoevalcap 1.2's Bleu(4), Rouge() and Cider() to 1e-6, on a hand-made
corpus of report sentences (identical pairs, pairs with no word in common, short and long
hypotheses, an empty one) and on 200 pairs of reports written by the report grammar; skipped when
pycocoevalcap is not installed (it is in the `test` extra). (b) BLEU-1 and ROUGE-L on pairs small
enough to count by hand. (c) clinical_scores on four studies counted by hand, with a finding
that has no support. (d) bad input names the argument at fault.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from minirad.data.findings import FINDINGS
from minirad.data.reports import write_report
from minirad.data.vocab import clean_report
from minirad.metrics import (
    clinical_scores,
    distinct_reports,
    labels_from_reports,
    lcs_length,
    nlg_scores,
)
from test_labeler import random_study

# (reference, hypothesis) pairs, cleaned as vocab.clean_report writes them.
PAIRS = [
    ("the heart is normal in size . the lungs are clear .",) * 2,  # identical
    ("no pleural effusion or pneumothorax .",) * 2,  # identical
    ("there is a small left pleural effusion .",) * 2,  # identical
    ("heart size is normal .", "heart size is normal ."),  # identical and short
    ("the heart is normal in size .", "moderate cardiomegaly"),  # no word in common
    ("no acute cardiopulmonary process .", "endotracheal tube terminates above carina"),
    ("lungs are clear .", "bilateral"),  # one-token hypothesis, no overlap
    ("the lungs are clear .", ""),  # empty hypothesis
    ("the cardiac silhouette is enlarged .", "the heart is enlarged ."),
    ("there is a right upper lobe nodule measuring 12 mm .", "right upper lobe nodule ."),
    (
        "the heart is normal in size . the mediastinum is unremarkable . the lungs are clear .",
        "the heart is normal .",
    ),  # much shorter hypothesis: brevity penalty
    (
        "no pleural effusion .",
        "there is a small left pleural effusion . there is no pneumothorax . the heart is "
        "normal in size . the mediastinum is unremarkable . no focal consolidation .",
    ),  # much longer hypothesis: CIDEr's length penalty
    ("mild pulmonary edema .", "mild interstitial edema ."),
    ("a central line terminates in the svc .", "central line tip in the svc ."),
    ("moderate cardiomegaly . no effusion .", "no effusion . moderate cardiomegaly ."),  # reordered
    ("left lower lobe atelectasis .", "atelectasis left lower lobe ."),
    ("large right pneumothorax .", "small right pneumothorax ."),
    ("there is a 4.5 cm mass in the left upper lobe .", "left upper lobe mass measuring 4.5 cm ."),
    ("no focal consolidation .", "focal consolidation in the right lower lobe ."),
    ("the the the heart .", "the the heart heart heart ."),  # repeated words: clipping
    ("stable cardiomegaly .", "the heart is stable ."),
    ("the lungs are clear . no pneumothorax .", "the lungs are clear . no pneumothorax ."),
    ("bibasilar atelectasis .", "bibasilar opacities likely atelectasis ."),
    ("no acute osseous abnormality .", "no acute cardiopulmonary abnormality ."),
    ("nasogastric tube in the stomach .", "nasogastric tube courses below the diaphragm ."),
    ("the heart is mildly enlarged .", "mild cardiomegaly ."),
    ("small bilateral pleural effusions .", "bilateral pleural effusions are small ."),
    ("right middle lobe consolidation .", "right middle lobe pneumonia ."),
    ("pacemaker leads in the right atrium and ventricle .", "pacemaker in place ."),
    ("the lungs are hyperinflated .", "hyperinflated lungs ."),
    ("no change .", "no change from prior ."),
    ("interval resolution of the left effusion .", "the left effusion has resolved ."),
    ("no pleural effusion or pneumothorax .", "no pneumothorax or pleural effusion ."),
]

KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")


def coco_scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """The same table from pycocoevalcap: its scorers take {id: [sentence]} dicts."""
    bleu_mod = pytest.importorskip("pycocoevalcap.bleu.bleu")
    rouge_mod = pytest.importorskip("pycocoevalcap.rouge.rouge")
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    gts = {i: [r] for i, r in enumerate(references)}
    res = {i: [h] for i, h in enumerate(hypotheses)}
    bleu, _ = bleu_mod.Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = rouge_mod.Rouge().compute_score(gts, res)
    cider, _ = cider_mod.Cider().compute_score(gts, res)
    return dict(zip(KEYS, [*bleu, float(rouge), float(cider)], strict=True))


def assert_scores_match(references: list[str], hypotheses: list[str]) -> None:
    ours, theirs = nlg_scores(references, hypotheses), coco_scores(references, hypotheses)
    assert set(ours) == set(KEYS)
    for key in KEYS:
        assert abs(ours[key] - theirs[key]) <= 1e-6, (
            f"{key}: minirad {ours[key]!r} vs pycocoevalcap {theirs[key]!r} "
            f"on a corpus of {len(references)} pairs"
        )


def test_nlg_scores_equal_pycocoevalcap_on_hand_made_corpus():
    references, hypotheses = map(list, zip(*PAIRS, strict=True))
    assert len(references) >= 30
    assert_scores_match(references, hypotheses)


def test_nlg_scores_equal_pycocoevalcap_on_generated_reports():
    # 100 hypotheses describe another study, 100 the same study in other words (a second draw
    # of the grammar's phrasing), so that the scores are neither ~0 nor ~1.
    rng = np.random.default_rng(11)
    studies = [random_study(rng) for _ in range(200)]
    references = [clean_report(write_report(study, rng)) for study in studies]
    others = [random_study(rng) for _ in range(100)]
    hypotheses = [clean_report(write_report(study, rng)) for study in others + studies[100:]]
    assert_scores_match(references, hypotheses)


def test_nlg_scores_of_identical_corpus():
    references = [r for r, _ in PAIRS]
    scores = nlg_scores(references, references)
    for k in range(1, 5):
        assert scores[f"BLEU-{k}"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == 1.0


# (b) by hand


def test_bleu_1_by_hand_clipping_and_brevity_penalty():
    # hyp "the the heart": "the" clipped to its 1 occurrence in the reference -> p1 = 2/3;
    # c = 3 < r = 4 -> BP = exp(1 - 4/3).
    scores = nlg_scores(["the heart is normal"], ["the the heart"])
    assert scores["BLEU-1"] == pytest.approx(2 / 3 * math.exp(1 - 4 / 3), rel=1e-8)


def test_bleu_1_sums_over_the_corpus_before_dividing():
    # pair 1: 4 of 4 unigrams match; pair 2: 1 of 2. Corpus p1 = 5/6 (not the mean 3/4); c = r.
    scores = nlg_scores(["a b c d", "e f"], ["a b c d", "x e"])
    assert scores["BLEU-1"] == pytest.approx(5 / 6, rel=1e-8)


def test_rouge_l_by_hand():
    # LCS("no pleural effusion or pneumothorax", "no effusion") = 2: P = 2/2, R = 2/5.
    P, R, beta2 = 1.0, 0.4, 1.2**2
    f = (1 + beta2) * P * R / (R + beta2 * P)
    # second pair: "a b c" vs "c b a" share one token in order: P = R = 1/3, F = 1/3.
    scores = nlg_scores(["no pleural effusion or pneumothorax", "a b c"], ["no effusion", "c b a"])
    assert scores["ROUGE-L"] == pytest.approx((f + 1 / 3) / 2, rel=1e-12)


def test_lcs_length():
    assert lcs_length(["a", "b", "c", "d", "e"], ["a", "c", "e"]) == 3
    assert lcs_length(["a", "b"], []) == 0
    assert lcs_length(["x", "a", "y", "b"], ["a", "b", "x"]) == 2


# (c) clinical scores


def test_clinical_scores_by_hand():
    true = [{"cardiomegaly"}, {"cardiomegaly", "nodule"}, set(), {"edema"}]
    pred = [{"cardiomegaly"}, {"nodule"}, {"nodule"}, {"pneumothorax"}]
    s = clinical_scores(true, pred)
    assert set(s) == {*FINDINGS, "micro", "macro"}
    # cardiomegaly: tp 1, fn 1
    assert s["cardiomegaly"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    # nodule: tp 1, fp 1
    assert s["nodule"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    # edema: missed (precision 0/0 = 0)
    assert s["edema"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # pneumothorax: no support, predicted once (recall 0/0 = 0)
    assert s["pneumothorax"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # mass: no support, never predicted: all 0/0 = 0
    assert s["mass"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # micro: tp 2, fp 2 (nodule, pneumothorax), fn 2 (cardiomegaly, edema)
    assert s["micro"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}
    # macro: the mean over all 9 findings, the 7 without a true positive counting 0
    assert s["macro"]["precision"] == pytest.approx(1.5 / 9)
    assert s["macro"]["recall"] == pytest.approx(1.5 / 9)
    assert s["macro"]["f1"] == pytest.approx((4 / 3) / 9)
    assert s["macro"]["support"] == 4


def test_labels_from_reports_keeps_positive_findings_only():
    labels = labels_from_reports(
        ["The heart is enlarged. No pleural effusion. Possible pneumothorax.", "Lungs are clear."]
    )
    assert labels == [{"cardiomegaly"}, set()]


def test_distinct_reports():
    assert distinct_reports(["no effusion .", "no  effusion .", "lungs clear ."]) == 2
    assert distinct_reports(["the heart is normal ."] * 5) == 1


# (d) bad input


def test_lists_of_different_lengths_name_the_argument():
    with pytest.raises(ValueError, match="hypotheses"):
        nlg_scores(["a b", "c d"], ["a b"])
    with pytest.raises(ValueError, match="predicted"):
        clinical_scores([{"edema"}, set()], [set()])


def test_other_bad_input_names_the_argument():
    with pytest.raises(ValueError, match=r"references: expected a list"):
        nlg_scores("a b", ["a b"])
    with pytest.raises(ValueError, match=r"hypotheses\[1\]"):
        nlg_scores(["a", "b"], ["a", ["b"]])
    with pytest.raises(ValueError, match="references: empty"):
        nlg_scores([], [])
    with pytest.raises(ValueError, match=r"true_labels\[0\].*effusion"):
        clinical_scores([{"effusion"}], [set()])


# ---------------------------------------------------------------------------------------------
# Calibration


def test_expected_calibration_error_by_hand():
    from minirad.metrics import expected_calibration_error, reliability_bins

    # Bin [0.2, 0.3): P 0.25 three times, one true -> |1/3 - 0.25| = 1/12, weight 3/5.
    # Bin [0.9, 1.0]: P 1.0 and 0.9, both true -> |1 - 0.95| = 0.05, weight 2/5.
    p, y = np.array([0.25, 0.25, 0.25, 1.0, 0.9]), np.array([1, 0, 0, 1, 1])
    assert [b["count"] for b in reliability_bins(p, y)] == [3, 2]
    assert expected_calibration_error(p, y) == pytest.approx(0.6 / 12 + 0.4 * 0.05)


def test_a_calibrated_predictor_has_a_small_error_and_an_overconfident_one_a_large_one():
    from minirad.metrics import expected_calibration_error

    rng = np.random.default_rng(0)
    p = rng.random((20000, 3))
    y = (rng.random((20000, 3)) < p).astype(float)
    assert expected_calibration_error(p, y) < 0.01
    assert expected_calibration_error(np.where(p > 0.5, 1.0, 0.0), y) > 0.2
    with pytest.raises(ValueError, match="finite number in"):
        expected_calibration_error(np.array([np.nan]), np.array([1.0]))
