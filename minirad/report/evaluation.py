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

"reference" scores the ground-truth reports themselves: clinical F1 1.0 means the labeler reads
every finding right, the ceiling the others are measured against.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from minirad.data.vocab import clean_report
from minirad.metrics import clinical_scores, distinct_reports, labels_from_reports, nlg_scores
from minirad.models.report_checkpoint import load_report_model
from minirad.models.report_data import ReportArrays, read_images, read_records, split
from minirad.report.decoding import Sentences, generate

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
) -> dict:
    """Scores of the model and of the baselines on one split of `data` (see module doc).

    The baselines draw their reports from the train split of `train_data` (default: `data`);
    pass the model's own training set to give them the same reports the model learned from.
    """
    model, vocab, _ = load_report_model(model_path)
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
        "distinct references": distinct_reports(references),
        "examples": [
            {"id": test.ids[i], "reference": references[i], "generated": hypotheses[i]}
            for i in range(min(3, len(test)))
        ],
    }
    return results


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
    return "\n".join(lines)
