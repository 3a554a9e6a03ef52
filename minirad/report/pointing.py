"""The pointing game: when the decoder names a lesion, is it looking at it?

An attention map alpha (L,) over the G x G cells of the feature grid (cell l = row * G + col,
row-major, as ReportModel.encode flattens the grid) is the decoder's answer to "where am I
reading?" for one word. The phantom knows where each lesion is (phantom.lesion_masks), so the
answer can be scored, as in the pointing game of Zhang et al. (2016, "Top-down neural attention
by excitation backprop"): for a true finding that the report states, each word that names it
(a word the labeler's mention patterns match, in a sentence the labeler reads as positive for
that finding) is a hit when its map's peak cell lies on the lesion:

    cell_mask[r, c] = any pixel of the lesion mask inside cell (r, c)        (G, G)
    dilated         = cell_mask grown by one cell in the 8 directions         (G, G)
    hit(word t)     = dilated.flat[argmax_l alpha[t, l]]

The dilation forgives a peak one cell off, as the convolutions' receptive fields (and a lesion
on a cell's edge) blur the boundary. Each named word of each scored finding counts once;
the hit rate of a finding is hits / words over every report. Beside it, chance: the hit rate of
a peak drawn uniformly over the cells, the mean over the same words of dilated.mean() (a large
effusion covers a third of the grid; a nodule's dilated cells, a ninth).

Shapes: tokens T words of one report (no <bos>/<eos>), attention (T, L) with L = G * G, a lesion
mask (S, S) pixels with S = G * cell size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from minirad.data.findings import POSITIVE, Study
from minirad.data.labeler import MENTIONS, label_report

# The findings drawn at one place of the image (phantom.render_with_masks has their layers):
# edema fills both lungs' centres and is not scored; cardiomegaly and devices have no mask.
LOCALIZED = ("nodule", "mass", "consolidation", "pneumothorax", "pleural_effusion", "atelectasis")


def names_finding(word: str, name: str) -> bool:
    """Whether `word` on its own is a mention of finding `name` ("effusions", "pneumothorax")."""
    return any(re.fullmatch(pattern, word) for pattern in MENTIONS[name])


def cell_mask(mask: np.ndarray, grid_side: int) -> np.ndarray:
    """(S, S) bool pixels -> (G, G) bool: a cell is on where any of its pixels is."""
    S = mask.shape[0]
    if mask.shape != (S, S) or S % grid_side:
        raise ValueError(f"mask: expected a square side divisible by {grid_side}, got {mask.shape}")
    cell = S // grid_side
    return np.asarray(mask.reshape(grid_side, cell, grid_side, cell).any(axis=(1, 3)))


def dilate(cells: np.ndarray) -> np.ndarray:
    """(G, G) bool grown by one cell in every direction (diagonals included)."""
    padded = np.pad(cells, 1)
    G = cells.shape[0]
    grown = np.zeros_like(cells)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            grown |= padded[dr : dr + G, dc : dc + G]
    return grown


def _sentences(words: Sequence[str]) -> list[tuple[int, int]]:
    """[start, end) token spans of the sentences: "." is a token of its own (vocab.py)."""
    spans, start = [], 0
    for t, word in enumerate(words):
        if word == ".":
            spans.append((start, t))
            start = t + 1
    spans.append((start, len(words)))
    return [(a, b) for a, b in spans if b > a]


def point_words(
    words: Sequence[str], attention: np.ndarray, study: Study, masks: dict[int, np.ndarray]
) -> dict[str, list[tuple[bool, float]]]:
    """{finding name: [(hit, chance) for each word naming it]} for one report, chance the share
    of the grid's cells that count as a hit.

    words (T,) the report's tokens; attention (T, L), L = G * G; study the truth, masks its
    lesion masks by finding index (phantom.lesion_masks). Only true, localized findings with a
    non-empty mask that a sentence of the report states positive are scored.
    """
    attention = np.asarray(attention)
    if attention.ndim != 2 or attention.shape[0] != len(words):
        raise ValueError(
            f"attention: expected ({len(words)}, L), one map per word, got {attention.shape}"
        )
    grid_side = int(round(np.sqrt(attention.shape[1])))
    if grid_side * grid_side != attention.shape[1]:
        raise ValueError(f"attention: L = {attention.shape[1]} is not a square grid")
    targets: dict[str, np.ndarray] = {}
    for index, finding in enumerate(study.findings):
        mask = masks.get(index)
        if finding.name in LOCALIZED and mask is not None and mask.any():
            cells = dilate(cell_mask(mask, grid_side))
            # Two lesions of one kind (rare): a peak on either counts.
            targets[finding.name] = targets.get(finding.name, cells) | cells
    hits: dict[str, list[tuple[bool, float]]] = {}
    for start, end in _sentences(words):
        labels = label_report(" ".join(words[start:end]))
        for name, target in targets.items():
            if labels.get(name) != POSITIVE:
                continue
            for t in range(start, end):
                if names_finding(words[t], name):
                    peak = int(np.argmax(attention[t]))
                    outcome = (bool(target.flat[peak]), float(target.mean()))
                    hits.setdefault(name, []).append(outcome)
    return hits


def pointing_scores(
    per_report: Sequence[dict[str, list[tuple[bool, float]]]],
) -> dict[str, dict[str, float]]:
    """{finding: {"words", "hits", "hit_rate", "chance"}} over all reports, and "all" over the
    findings together (a finding no report names is left out)."""
    scores: dict[str, dict[str, float]] = {}
    everything: list[tuple[bool, float]] = []
    for name in LOCALIZED:
        outcomes = [outcome for report in per_report for outcome in report.get(name, [])]
        if outcomes:
            scores[name] = _rates(outcomes)
            everything += outcomes
    if everything:
        scores["all"] = _rates(everything)
    return scores


def _rates(outcomes: list[tuple[bool, float]]) -> dict[str, float]:
    hits = sum(hit for hit, _ in outcomes)
    return {
        "words": len(outcomes),
        "hits": hits,
        "hit_rate": hits / len(outcomes),
        "chance": sum(chance for _, chance in outcomes) / len(outcomes),
    }


_PHANTOM_ID = re.compile(r"phantom-(\d+)-(\d+)")


def phantom_of(image_id: str) -> tuple[int, int] | None:
    """(seed, index) of a phantom's id as `minirad data synth` writes it, else None."""
    match = _PHANTOM_ID.fullmatch(image_id)
    return (int(match[1]), int(match[2])) if match else None


def pointing_game(
    image_ids: Sequence[str], words: Sequence[Sequence[str]], attentions: Sequence[np.ndarray],
    image_size: int,
) -> dict[str, dict[str, float]] | None:  # fmt: skip
    """pointing_scores over the phantoms among `image_ids` (their masks redrawn from their seed
    and index: phantom.lesion_masks), None when there is none (real images have no masks)."""
    from minirad.data.phantom import lesion_masks

    per_report = []
    for image_id, report_words, attention in zip(image_ids, words, attentions, strict=True):
        phantom = phantom_of(image_id)
        if phantom is not None:
            study, masks = lesion_masks(*phantom, size=image_size)
            per_report.append(point_words(report_words, attention, study, masks))
    return pointing_scores(per_report) if per_report else None


def pointing_png(scores: dict[str, dict[str, float]]) -> bytes:
    """A bar chart: each finding's hit rate beside chance, the words scored under its name."""
    import io

    from matplotlib.figure import Figure  # not pyplot: no global backend switch

    names = [name for name in scores if name != "all"]
    x = np.arange(len(names))
    figure = Figure(figsize=(8.5, 3.4))
    axes = figure.subplots()
    axes.bar(x - 0.2, [scores[n]["hit_rate"] for n in names], 0.4, label="attention peak")
    axes.bar(x + 0.2, [scores[n]["chance"] for n in names], 0.4, label="chance", color="0.7")
    labels = [f"{n.replace('_', chr(10))}\n{scores[n]['words']:.0f} words" for n in names]
    axes.set_xticks(x, labels, fontsize=8)  # chr(10): "pleural_effusion" on two lines
    axes.set_ylim(0, 1)
    axes.set_ylabel("on the lesion (dilated by one cell)")
    axes.set_title("Pointing game: where the decoder looks when it names a finding")
    axes.legend(loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
