"""`minirad evaluate`: every metric for a model, and for two baselines that keep it honest.

    results = evaluate("model.npz", "phantoms/", split="test")
    results["model"]["clinical"]["micro"]["f1"], results["nearest neighbour"]["nlg"]["BLEU-4"]

The baselines, each scored exactly like the model:

* constant normal report: every study gets the training set's most frequent report with no
  positive finding. On real data this scores almost as high on BLEU as published systems,
  because most studies are normal and normal reports are formulaic; its clinical F1 is 0.
* nearest-neighbour retrieval: each study gets the report of the training image closest to it
  (Euclidean distance between 32 x 32 thumbnails, each standardised to mean 0, variance 1).
  It copies a real, fluent report, so it measures what image similarity alone is worth.

On a GPU backend the model is loaded onto the device and each batch of test images crosses
once (`generate`); the baselines and the metrics work on the host, on text and thumbnails.

Calibration: the finding head's probabilities on the test images, before (sigmoid(z)) and after
the temperatures the checkpoint carries (minirad.report.familiarity.Calibration), each scored by
the expected calibration error (minirad.metrics.expected_calibration_error); with
`reliability_path` both reliability diagrams are drawn into one PNG, written atomically.

"reference" scores the ground-truth reports themselves: clinical F1 1.0 means the labeler reads
every finding right, the ceiling the others are measured against.

Pointing game (minirad.report.pointing): on phantoms, whose lesion masks are redrawn from each
study's seed and index, the share of the words naming a true localized finding whose attention
peak falls on that lesion (dilated by one grid cell), per finding and beside chance; with
`pointing_path` a bar chart of it, written atomically. None on data without phantom ids.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np

from minirad.data.vocab import clean_report
from minirad.files import write_atomically
from minirad.metrics import (
    clinical_scores,
    distinct_reports,
    expected_calibration_error,
    labels_from_reports,
    nlg_scores,
    reliability_bins,
)
from minirad.models.report_checkpoint import load_report_model, review_statistics
from minirad.models.report_data import ReportArrays, read_images, read_records, split
from minirad.report.decoding import Sentences, generate
from minirad.report.familiarity import Calibration, encoder_outputs
from minirad.report.pointing import pointing_game, pointing_png

THUMBNAIL = 32


def score(references: list[str], hypotheses: list[str], true_sets: list[set[str]]) -> dict:
    """{"clinical": per-finding and micro/macro P/R/F1, "nlg": BLEU-1..4, ROUGE-L, CIDEr,
    "distinct": number of different reports, "studies": count}."""
    return {
        "clinical": clinical_scores(true_sets, labels_from_reports(hypotheses)),
        "nlg": nlg_scores(references, hypotheses),
        "distinct": distinct_reports(hypotheses),
        "studies": len(hypotheses),
    }


def constant_normal_report(train_reports: list[str]) -> str:
    """The most frequent cleaned training report in which the labeler finds nothing positive."""
    cleaned = [clean_report(r) for r in train_reports]
    normal = [
        r for r, labels in zip(cleaned, labels_from_reports(cleaned), strict=True) if not labels
    ]
    if not normal:  # a dataset without a normal study: fall back to the shortest report
        return min(cleaned, key=len)
    return Counter(normal).most_common(1)[0][0]


def thumbnails(images: np.ndarray) -> np.ndarray:
    """images (N, 1, S, S) -> (N, 32*32): average-pooled to 32 x 32, each row standardised."""
    N, _, S, _ = images.shape
    factor = max(S // THUMBNAIL, 1)
    side = S // factor
    small = images[:, 0, : side * factor, : side * factor]
    small = small.reshape(N, side, factor, side, factor).mean(axis=(2, 4)).reshape(N, -1)
    small = small - small.mean(axis=1, keepdims=True)
    return small / (small.std(axis=1, keepdims=True) + 1e-6)


def nearest_neighbour_reports(
    train_images: np.ndarray, train_reports: list[str], images: np.ndarray
) -> list[str]:
    """For each image, the cleaned report of the closest training image (see the module doc)."""
    train_codes, codes = thumbnails(train_images), thumbnails(images)
    # |a - b|^2 = |a|^2 - 2 a.b + |b|^2; |a|^2 is the same for every candidate b of a given a.
    distances = -2.0 * codes @ train_codes.T + (train_codes**2).sum(axis=1)[None, :]
    nearest = distances.argmin(axis=1)
    return [clean_report(train_reports[i]) for i in nearest]


def evaluate(
    model_path: str | Path,
    data: str | Path,
    split_name: str = "test",
    method: str = "beam",
    width: int = 3,
    limit: int | None = None,
    train_data: str | Path | None = None,
    reliability_path: str | Path | None = None,
    pointing_path: str | Path | None = None,
) -> dict:
    """Scores of the model and of the baselines on one split of `data` (see module doc).

    The baselines draw their reports from the train split of `train_data` (default: `data`);
    pass the model's own training set to give them the same reports the model learned from.
    reliability_path: where to write the reliability diagram (PNG); None: not drawn.
    pointing_path: where to write the pointing game's chart (PNG); None, data without
    phantoms, or no word to score: not drawn. The lesion masks are drawn at the model's input
    size; the phantom is drawn in patient coordinates, so a dataset synthesized at another size
    has its lesions at the same places (only the texture of patchy opacities differs).
    """
    model, vocab, meta = load_report_model(model_path)
    records = read_records(data)
    test_records = split(records, split_name)
    train_records = split(read_records(train_data) if train_data else records, "train")
    if limit is not None:
        test_records = test_records[:limit]
    size, max_len = model.config.image_size, model.config.max_len
    test = ReportArrays.from_records(test_records, vocab, size, max_len, f"reading {split_name}")
    true_sets, references = test.true_sets(), test.references
    # A beam never ends a sentence its section already has (see minirad.report.decoding).
    decoded = generate(model, test.images, method, width=width, block_sentences=Sentences.of(vocab))
    hypotheses = [vocab.decode(d.tokens) for d in decoded]
    train_reports = [r.report for r in train_records]
    train_images = read_images(train_records, size, desc="reading train (baseline)")
    constant = constant_normal_report(train_reports)
    calibration = calibration_scores(model, meta, test.images, test.findings)
    words = [[vocab.tokens[i] for i in d.tokens] for d in decoded]
    pointing = pointing_game(test.ids, words, [d.attention for d in decoded], size)
    results = {
        "split": split_name,
        "method": method,
        "model_file": str(model_path),
        "model": score(references, hypotheses, true_sets),
        "constant normal report": score(references, [constant] * len(test), true_sets),
        "nearest neighbour": score(
            references,
            nearest_neighbour_reports(train_images, train_reports, test.images),
            true_sets,
        ),
        "reference": score(references, references, true_sets),
        "calibration": calibration,
        "pointing": pointing,
        "distinct references": distinct_reports(references),
        "examples": [
            {"id": test.ids[i], "reference": references[i], "generated": hypotheses[i]}
            for i in range(min(3, len(test)))
        ],
    }
    if reliability_path is not None:
        write_atomically(reliability_path, reliability_png(calibration))
    if pointing_path is not None and pointing:  # something was scored
        write_atomically(pointing_path, pointing_png(pointing))
    return results


def calibration_scores(model, meta: dict, images: np.ndarray, findings: np.ndarray) -> dict:
    """ECE and reliability bins of the finding head on `images` (N, 1, S, S) against the true
    `findings` (N, K): "before" with T = 1, "after" with the checkpoint's temperatures (the same
    as before for a model that carries none). "decisions_unchanged": whether every P >= 0.5
    decision, what the decoder reads, is the same after calibration."""
    _, logits = encoder_outputs(model, images)
    calibration = review_statistics(meta)[1]
    as_trained = Calibration(np.ones(logits.shape[1]))
    before = as_trained.probabilities(logits)
    after = (calibration or as_trained).probabilities(logits)
    return {
        "calibrated": calibration is not None,
        "temperatures": None if calibration is None else calibration.temperatures.tolist(),
        "ece_before": expected_calibration_error(before, findings),
        "ece_after": expected_calibration_error(after, findings),
        "bins_before": reliability_bins(before, findings),
        "bins_after": reliability_bins(after, findings),
        "decisions_unchanged": bool(np.array_equal(before >= 0.5, after >= 0.5)),
    }


def reliability_png(calibration: dict) -> bytes:
    """Both reliability diagrams side by side: per bin, the fraction of true findings against
    the mean predicted P (the diagonal is perfect calibration), and the ECE in the title."""
    from matplotlib.figure import Figure  # not pyplot: no global backend switch

    fig = Figure(figsize=(9, 4.2))
    for ax, when in zip(fig.subplots(1, 2), ("before", "after"), strict=True):
        bins = calibration[f"bins_{when}"]
        ax.bar(
            [b["low"] for b in bins],
            [b["frequency"] for b in bins],
            width=[b["high"] - b["low"] for b in bins],
            align="edge",
            edgecolor="black",
            color="#4a78b5",
            label="fraction true",
        )
        ax.plot([b["confidence"] for b in bins], [b["frequency"] for b in bins], "o", color="k",
                label="(mean P, fraction true)")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="P(finding) from the finding head",
            ylabel="fraction of studies with the finding",
            title=f"{when} calibration: ECE {calibration[f'ece_{when}']:.4f}",
        )
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


SYSTEMS = ("model", "constant normal report", "nearest neighbour", "reference")


def format_results(results: dict) -> str:
    """A plain-text summary: one row per system, then the model's F1 per finding."""
    columns = ("micro-F1", "macro-F1", "BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "distinct")
    lines = [
        f"split '{results['split']}', {results['model']['studies']} studies, "
        f"{results['method']} decoding; distinct reference reports: "
        f"{results['distinct references']}",
        "",
        f"{'system':<24}" + "".join(f"{c:>10}" for c in columns),
    ]
    for system in SYSTEMS:
        s = results[system]
        values = (
            s["clinical"]["micro"]["f1"],
            s["clinical"]["macro"]["f1"],
            s["nlg"]["BLEU-1"],
            s["nlg"]["BLEU-4"],
            s["nlg"]["ROUGE-L"],
            s["nlg"]["CIDEr"],
        )
        lines.append(
            f"{system:<24}" + "".join(f"{v:>10.3f}" for v in values) + f"{s['distinct']:>10d}"
        )
    lines += ["", "model, per finding:", f"{'finding':<20}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}"]
    clinical = results["model"]["clinical"]
    for name, row in clinical.items():
        if name in ("micro", "macro"):
            continue
        lines.append(
            f"{name:<20}{row['precision']:>8.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}"
            f"{row['support']:>9d}"
        )
    calibration = results.get("calibration")
    if calibration is not None:
        note = "" if calibration["calibrated"] else " (the model carries no temperatures)"
        lines += [
            "",
            f"finding head calibration{note}: expected calibration error "
            f"{calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after; "
            f"decisions P >= 0.5 unchanged: {calibration['decisions_unchanged']}",
        ]
    pointing = results.get("pointing")
    if pointing:
        lines += [
            "",
            "pointing game (attention peak on the lesion, dilated by one cell, when a word names",
            "a true finding the report states):",
            f"{'finding':<20}{'words':>8}{'hit rate':>10}{'chance':>9}",
        ]
        for name, row in pointing.items():
            lines.append(
                f"{name:<20}{row['words']:>8d}{row['hit_rate']:>10.3f}{row['chance']:>9.3f}"
            )
    return "\n".join(lines)
