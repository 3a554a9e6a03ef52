"""The review step: every reason it gives can be triggered, and a sound report is accepted."""

from __future__ import annotations

import pytest

from minirad.data.findings import FINDINGS
from minirad.metrics import labels_from_reports
from minirad.report.review import (
    ACCEPTED,
    NEEDS_REVIEW,
    NO_FAMILIARITY,
    UNFAMILIAR,
    NonFiniteOutputError,
    format_report,
    review_report,
    sections_of,
)

SOUND = (
    "findings the heart is enlarged . no pleural effusion or pneumothorax . "
    "impression cardiomegaly ."
)


FAMILIAR = (0.9, 1.3)  # (score, threshold): an image like the training data


def probabilities(**present: float) -> dict[str, float]:
    """P = 0.02 for every finding except those given."""
    return {name: present.get(name, 0.02) for name in FINDINGS}


def test_sections_and_formatting():
    assert sections_of(SOUND) == {
        "findings": ["the heart is enlarged", "no pleural effusion or pneumothorax"],
        "impression": ["cardiomegaly"],
    }
    assert format_report(SOUND) == (
        "FINDINGS: The heart is enlarged. No pleural effusion or pneumothorax.\n\n"
        "IMPRESSION: Cardiomegaly."
    )


def test_a_sound_report_that_agrees_with_the_finding_head_is_accepted():
    review = review_report(SOUND, probabilities(cardiomegaly=0.97), familiarity=FAMILIAR)
    assert review.verdict == ACCEPTED, review.reasons
    assert review.stated["cardiomegaly"] == 1 and review.stated["pleural_effusion"] == 0
    assert review.positive == labels_from_reports([format_report(SOUND)])[0] == {"cardiomegaly"}


@pytest.mark.parametrize(
    "text, probs, finished, expected",
    [
        (
            "findings the heart is enlarged .",
            {"cardiomegaly": 0.9},
            True,
            "missing section: IMPRESSION",
        ),
        (
            "findings the heart is enlarged . impression .",
            {"cardiomegaly": 0.9},
            True,
            "empty section: IMPRESSION",
        ),
        (SOUND, {"cardiomegaly": 0.9}, False, "unfinished"),
        (
            SOUND.replace("impression", "no pleural effusion or pneumothorax . impression"),
            {"cardiomegaly": 0.9},
            True,
            "repeated sentence in FINDINGS",
        ),
        (
            SOUND.replace("impression cardiomegaly", "impression no cardiomegaly"),
            {"cardiomegaly": 0.9},
            True,
            "contradiction about cardiomegaly",
        ),
        (
            SOUND,
            {"cardiomegaly": 0.1},
            True,
            "states cardiomegaly, but the finding head gives P = 0.10",
        ),
        (
            SOUND,
            {"cardiomegaly": 0.9, "nodule": 0.8},
            True,
            "does not state nodule, but the finding head gives P = 0.80",
        ),
        (SOUND, {"cardiomegaly": 0.9, "edema": 0.4}, True, "unsure about edema (P = 0.40)"),
        (
            "findings a 22 mm nodule is seen in the left upper lobe . "
            "impression 13 mm pulmonary nodule in the left upper lobe .",
            {"nodule": 0.9},
            True,
            "inconsistent size of nodule: 13 mm vs 22 mm",
        ),
        (
            "findings a moderate right pleural effusion is present . "
            "impression small right pleural effusion .",
            {"pleural_effusion": 0.9},
            True,
            "inconsistent severity of pleural effusion: moderate vs small",
        ),
        (
            "findings there is a large left pleural effusion . "
            "impression large right pleural effusion .",
            {"pleural_effusion": 0.9},
            True,
            "inconsistent side of pleural effusion: left vs right",
        ),
        ("", {}, False, "the report is empty"),
    ],
)
def test_each_problem_is_named(text, probs, finished, expected):
    review = review_report(text, probabilities(**probs), finished)
    assert review.verdict == NEEDS_REVIEW
    assert any(expected in reason for reason in review.reasons), review.reasons


def test_an_impression_restating_a_finding_is_not_a_repeat():
    text = (
        "findings focal airspace consolidation in the right lower zone . "
        "impression focal airspace consolidation in the right lower zone ."
    )
    review = review_report(text, probabilities(consolidation=0.95), familiarity=FAMILIAR)
    assert review.verdict == ACCEPTED, review.reasons


@pytest.mark.parametrize(
    "text, finding",
    [
        # one size in two units; the two severity scales; a negated mention with another side
        (
            "findings there is a 3.5 cm mass in the left upper lobe . "
            "impression 35 mm mass in the left upper lobe .",
            "mass",
        ),
        (
            "findings the heart is mildly enlarged cardiothoracic ratio 0.55 . "
            "impression mild cardiomegaly .",
            "cardiomegaly",
        ),
        (
            "findings small left pleural effusion . no right pleural effusion . "
            "impression small left pleural effusion .",
            "pleural_effusion",
        ),
    ],
)
def test_the_same_description_in_other_words_is_consistent(text, finding):
    review = review_report(text, probabilities(**{finding: 0.95}))
    assert not [r for r in review.reasons if r.startswith("inconsistent")], review.reasons


def test_sections_are_optional_for_datasets_without_headers():
    review = review_report(
        "the heart is enlarged .",
        probabilities(cardiomegaly=0.9),
        required_sections=(),
        familiarity=FAMILIAR,
    )
    assert review.verdict == ACCEPTED, review.reasons


def test_unknown_finding_names_are_refused():
    with pytest.raises(ValueError, match="unknown findings"):
        review_report(SOUND, {"fracture": 0.5})


# ---------------------------------------------------------------------------------------------
# The whole report: IMPRESSION against FINDINGS, familiarity, non-finite numbers


def test_an_impression_finding_that_findings_never_mention_is_flagged():
    text = SOUND.replace(
        "impression cardiomegaly", "impression cardiomegaly . left pleural effusion"
    )
    review = review_report(text, probabilities(cardiomegaly=0.97), familiarity=FAMILIAR)
    assert "IMPRESSION states pleural effusion, but FINDINGS does not" in review.reasons


def test_a_findings_finding_that_the_impression_does_not_carry_is_flagged():
    text = "findings the heart is enlarged . a right pneumothorax . impression cardiomegaly ."
    review = review_report(text, probabilities(cardiomegaly=0.97), familiarity=FAMILIAR)
    assert "FINDINGS states pneumothorax, but IMPRESSION does not carry it" in review.reasons


def test_an_impression_finding_negated_in_findings_is_flagged_both_ways():
    text = "findings the heart size is normal . impression cardiomegaly ."
    reasons = review_report(text, probabilities(cardiomegaly=0.97), familiarity=FAMILIAR).reasons
    assert "IMPRESSION states cardiomegaly, but FINDINGS does not" in reasons
    assert any(r.startswith("contradiction about cardiomegaly") for r in reasons)


def test_an_unfamiliar_image_needs_review_and_the_score_is_kept():
    review = review_report(SOUND, probabilities(cardiomegaly=0.97), familiarity=(2.5, 1.3))
    assert review.verdict == NEEDS_REVIEW and review.reasons == [UNFAMILIAR]
    assert review.to_dict()["familiarity"] == {"score": 2.5, "threshold": 1.3}
    assert "score 2.50, threshold 1.30 (unlike the training data" in review.familiarity_line()


def test_without_familiarity_statistics_the_review_says_it_cannot_tell():
    review = review_report(SOUND, probabilities(cardiomegaly=0.97))
    assert review.verdict == NEEDS_REVIEW and review.reasons == [NO_FAMILIARITY]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_probabilities_are_refused(bad):
    with pytest.raises(NonFiniteOutputError, match="non-finite"):
        review_report(SOUND, probabilities(cardiomegaly=bad), familiarity=FAMILIAR)
    with pytest.raises(NonFiniteOutputError, match="familiarity"):
        review_report(SOUND, probabilities(cardiomegaly=0.97), familiarity=(bad, 1.3))
