"""The pointing game (minirad/report/pointing.py) and the lesion masks it reads
(minirad/data/phantom.py, render_with_masks and lesion_masks)."""

from __future__ import annotations

import numpy as np
import pytest

from minirad.data.findings import Finding, Study
from minirad.data.phantom import lesion_masks, one_phantom, render, render_with_masks
from minirad.report.pointing import (
    cell_mask,
    dilate,
    phantom_of,
    point_words,
    pointing_game,
    pointing_png,
    pointing_scores,
)

G = 4  # a 4 x 4 grid over a 16 x 16 image: cells of 4 x 4 pixels


def _mask_at(row: int, col: int, size: int = 16, cell: int = 4) -> np.ndarray:
    """A lesion covering pixel (row, col) only."""
    mask = np.zeros((size, size), bool)
    mask[row, col] = True
    return mask


def _attention_peaking_at(cells: list[int], L: int = G * G) -> np.ndarray:
    """One map per word, each with its peak on the given cell."""
    attention = np.full((len(cells), L), 0.01)
    for t, cell in enumerate(cells):
        attention[t, cell] = 0.9
    return attention


def test_cell_mask_marks_the_cells_holding_a_lesion_pixel():
    cells = cell_mask(_mask_at(5, 14), G)  # row 5 -> cell row 1; column 14 -> cell column 3
    assert cells.shape == (G, G) and cells.sum() == 1 and cells[1, 3]


def test_dilate_grows_one_cell_in_eight_directions_and_stops_at_the_edge():
    cells = np.zeros((G, G), bool)
    cells[0, 0] = True
    grown = dilate(cells)
    assert grown.sum() == 4 and grown[:2, :2].all()  # a corner: itself and three neighbours
    cells = np.zeros((G, G), bool)
    cells[1, 1] = True
    assert dilate(cells).sum() == 9


NODULE = Study((Finding("nodule", side="left", zone="upper", value=12.0),))
WORDS = [
    "there",
    "is",
    "a",
    "nodule",
    "in",
    "the",
    "left",
    "upper",
    "lobe",
    ".",
    "no",
    "pneumothorax",
    ".",
]


def test_a_peak_on_the_lesion_or_next_to_it_is_a_hit_and_elsewhere_a_miss():
    masks = {0: _mask_at(1, 1)}  # cell (0, 0): dilated, cells 0, 1, 4, 5 count
    where = WORDS.index("nodule")
    for peak, hit in ((0, True), (5, True), (2, False), (15, False)):
        cells = [15] * len(WORDS)
        cells[where] = peak
        outcome = point_words(WORDS, _attention_peaking_at(cells), NODULE, masks)
        assert outcome == {"nodule": [(hit, 4 / 16)]}, (peak, outcome)


def test_only_true_findings_stated_positive_are_scored():
    masks = {0: _mask_at(1, 1)}
    attention = _attention_peaking_at([0] * 3)
    assert point_words(["no", "nodule", "."], attention, NODULE, masks) == {}  # negated
    pneumothorax = Study((Finding("pneumothorax", side="right", severity="small"),))
    words = ["a", "nodule", "is", "seen"]
    assert point_words(words, _attention_peaking_at([0] * 4), pneumothorax, masks) == {}
    empty = {0: np.zeros((16, 16), bool)}  # a finding the drawing left no pixel of
    assert point_words(words, _attention_peaking_at([0] * 4), NODULE, empty) == {}


def test_point_words_refuses_attention_of_the_wrong_shape():
    with pytest.raises(ValueError, match="one map per word"):
        point_words(WORDS, np.zeros((3, 16)), NODULE, {})
    with pytest.raises(ValueError, match="not a square grid"):
        point_words(WORDS[:2], np.zeros((2, 15)), NODULE, {})


def test_pointing_scores_sum_words_hits_and_chance_over_reports():
    per_report = [{"nodule": [(True, 0.25), (False, 0.25)]}, {"mass": [(True, 0.5)]}, {}]
    scores = pointing_scores(per_report)
    assert scores["nodule"] == {"words": 2, "hits": 1, "hit_rate": 0.5, "chance": 0.25}
    assert scores["all"]["words"] == 3 and scores["all"]["hit_rate"] == pytest.approx(2 / 3)
    assert "consolidation" not in scores
    assert pointing_scores([{}]) == {}
    assert pointing_png(scores)[:8] == b"\x89PNG\r\n\x1a\n"


def test_phantom_ids_give_their_seed_and_index():
    assert phantom_of("phantom-7-001612") == (7, 1612)
    assert phantom_of("patient-7-1") is None


def test_the_masks_come_from_the_same_drawing_as_the_image():
    image, study = one_phantom(7, 1)
    drawn_study, masks = lesion_masks(7, 1)
    assert drawn_study == study
    rng = np.random.default_rng(0)
    again, _ = render_with_masks(study, rng)
    assert again.tobytes() == render(study, np.random.default_rng(0)).tobytes()


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_mask_lies_on_its_side_of_the_image(side):
    """The patient's left is the image's right (radiological convention)."""
    study = Study((Finding("pleural_effusion", side=side, severity="moderate"),))
    _, masks = render_with_masks(study, np.random.default_rng(3), 64)
    columns = np.nonzero(masks[0])[1]
    assert columns.size > 0
    assert (columns.mean() > 32) == (side == "left")


def test_the_pointing_game_on_phantoms_scores_a_map_that_looks_at_the_lesion():
    """End to end on real masks: a map peaking at the lesion's own cell hits, every time."""
    ids, words, attentions = [], [], []
    for index in range(40):
        study, masks = lesion_masks(11, index, 64)
        for f_index, finding in enumerate(study.findings):
            if finding.name == "pleural_effusion" and masks.get(f_index) is not None:
                rows, cols = np.nonzero(masks[f_index])
                cell = (rows[0] // 16) * 4 + cols[0] // 16  # a 4 x 4 grid over 64 pixels
                ids.append(f"phantom-11-{index:06d}")
                words.append(["a", "pleural", "effusion", "."])
                attentions.append(_attention_peaking_at([cell, cell, cell, cell]))
                break
    assert ids, "no effusion among 40 phantoms"
    scores = pointing_game(ids + ["an-xray"], words + [["."]], attentions + [np.ones((1, 16))], 64)
    assert scores is not None and scores["pleural_effusion"]["hit_rate"] == 1.0
    assert scores["pleural_effusion"]["words"] == len(ids)
    assert pointing_game(["an-xray"], [["."]], [np.ones((1, 16))], 64) is None
