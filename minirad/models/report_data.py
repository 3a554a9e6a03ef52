"""A report dataset in memory: images, token ids and finding labels as arrays, one row per study.

    records = read_records("phantoms/")                  # annotation.json or the IU X-Ray CSVs
    vocab = Vocabulary.build([r.report for r in records if r.split == "train"])
    train = ReportArrays.from_records(split(records, "train"), vocab, image_size=128, max_len=90)
    train.images (N, 1, S, S) float32 in [0, 1]   train.tokens (N, max_len) int64, 0-padded
    train.findings (N, K) float32 in {0, 1}        train.references: the cleaned report texts

The finding labels are the ground truth where the dataset has it (the phantom's list of findings)
and otherwise what the labeler reads from the report text, as CheXpert labels are made for real
datasets: positive = 1; negative, uncertain and unmentioned = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minirad.data.datasets import Record, load_iu_xray_records, load_r2gen_annotation
from minirad.data.findings import FINDINGS, POSITIVE
from minirad.data.labeler import label_report
from minirad.data.readers import read_image
from minirad.data.vocab import PAD_ID, Vocabulary, clean_report

IU_XRAY_FILES = ("indiana_reports.csv", "indiana_projections.csv")


def read_records(data: str | Path) -> list[Record]:
    """The studies of a dataset folder (or an annotation .json), in the file's order.

    Recognised: DIR/annotation.json (R2Gen layout, what `minirad data synth` writes), or
    DIR/indiana_reports.csv + DIR/indiana_projections.csv (IU X-Ray). A folder of class
    sub-folders has no report text to learn from and is refused with that reason.
    """
    data = Path(data)
    if data.is_file() and data.suffix == ".json":
        return load_r2gen_annotation(data)
    if not data.is_dir():
        raise ValueError(f"{data}: no such dataset folder")
    if (data / "annotation.json").is_file():
        return load_r2gen_annotation(data / "annotation.json")
    if all((data / name).is_file() for name in IU_XRAY_FILES):
        reports_csv, projections_csv = (data / name for name in IU_XRAY_FILES)
        return load_iu_xray_records(reports_csv, projections_csv)
    raise ValueError(
        f"{data}: no annotation.json (R2Gen layout) and no {' + '.join(IU_XRAY_FILES)}; "
        "a report model needs report text (make a dataset with `minirad data synth`)"
    )


def split(records: list[Record], name: str) -> list[Record]:
    """The records of one split; ValueError if there are none (nothing to train or score on)."""
    chosen = [r for r in records if r.split == name]
    if not chosen:
        raise ValueError(f"the dataset has no '{name}' studies")
    return chosen


def true_findings(record: Record) -> set[str]:
    """The positive findings of a study: its ground truth if it has one, else the labeler's."""
    if isinstance(record.findings, list):  # the phantom's [{"name": ..., ...}, ...]
        return {f["name"] for f in record.findings if f["name"] in FINDINGS}
    labels = label_report(record.report)
    return {name for name, label in labels.items() if label == POSITIVE}


def finding_vector(names: set[str]) -> np.ndarray:
    """1.0 for each name of FINDINGS in `names`, else 0.0, in FINDINGS order: (K,) float32."""
    return np.array([name in names for name in FINDINGS], dtype=np.float32)


def read_images(records: list[Record], size: int, desc: str = "reading images") -> np.ndarray:
    """The first image of each record, grey in [0, 1], resized: (N, 1, size, size) float32."""
    images = np.empty((len(records), 1, size, size), dtype=np.float32)
    for i, record in enumerate(tqdm(records, desc=desc, unit="image", disable=None, leave=False)):
        images[i, 0] = read_image(record.image_paths[0], size)
    return images


@dataclass
class ReportArrays:
    """One split as arrays (see the module docstring for the shapes)."""

    ids: list[str]
    images: np.ndarray
    tokens: np.ndarray
    findings: np.ndarray
    references: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def from_records(
        records: list[Record], vocab: Vocabulary, image_size: int, max_len: int, desc: str = ""
    ) -> ReportArrays:
        tokens = np.full((len(records), max_len), PAD_ID, dtype=np.int64)
        for i, record in enumerate(records):
            ids = vocab.encode(record.report, max_len=max_len)
            tokens[i, : len(ids)] = ids
        return ReportArrays(
            ids=[r.id for r in records],
            images=read_images(records, image_size, desc=desc or "reading images"),
            tokens=tokens,
            findings=np.stack([finding_vector(true_findings(r)) for r in records]),
            references=[clean_report(r.report) for r in records],
        )

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, tokens cut to the longest report among `rows`, findings) for those rows."""
        tokens = self.tokens[rows]
        length = int((tokens != PAD_ID).sum(axis=1).max())
        return self.images[rows], tokens[:, :length], self.findings[rows]

    def true_sets(self) -> list[set[str]]:
        """The positive findings of each study, as sets of names (for clinical_scores)."""
        return [{FINDINGS[k] for k in np.flatnonzero(row)} for row in self.findings]
