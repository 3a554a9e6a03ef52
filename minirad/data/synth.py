"""`minirad data synth`: a phantom dataset in R2Gen's layout, written whole or not at all.

    DIR/
      images/<id>.png        the radiographs (8-bit grey)
      annotation.json        {"train": [...], "val": [...], "test": [...]}, each item
                             {"id", "report", "image_path": ["images/<id>.png"], "split",
                              "findings": [the ground truth, as Finding dicts]}
      contact_sheet.png      the first 16 images with their findings

The same (n, seed, size) gives byte-identical files: image i and its report come from
generators seeded by (seed, i), JSON keys are written in a fixed order, and PNGs carry no
timestamp. The whole directory is built beside DIR under a temporary name and renamed at the
end (minirad.files.atomic_directory), so an interrupted run leaves no half-written dataset, and
DIR gets the usual permissions (0o777 less the umask).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from minirad.data.phantom import caption, contact_sheet, synthesize
from minirad.data.reports import write_report
from minirad.errors import ArgumentError
from minirad.files import atomic_directory

SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
# The image side, in pixels: below 32 a phantom has no anatomy left (and the report pipeline's
# input gate refuses it); above 1024 one phantom's drawing layers take gigabytes (20000 pixels
# ran out of memory).
MIN_SIZE, MAX_SIZE = 32, 1024


def split_of(index: int, n: int) -> str:
    """The first 70% of the indices are train, the next 10% val, the last 20% test."""
    cumulative = 0.0
    for name, share in SPLITS:
        cumulative += share
        if index < round(cumulative * n):
            return name
    return SPLITS[-1][0]


def synthesize_dataset(out: str | Path, n: int, seed: int, size: int = 128) -> Path:
    """Write n phantoms with reports to `out` (which must not exist or be empty)."""
    out = Path(out)
    if n < 1:
        raise ArgumentError("n", f"need at least one image, got {n}")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ArgumentError(
            "size", f"must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels, got {size!r}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ArgumentError("out", f"{out} exists and is not an empty directory; choose another")
    with atomic_directory(out) as staging:  # built beside `out`, renamed to it at the end
        _write(staging, n, seed, size)
    return out


def _write(root: Path, n: int, seed: int, size: int) -> None:
    (root / "images").mkdir()
    annotation: dict[str, list] = {name: [] for name, _ in SPLITS}
    samples = synthesize(n, seed, size=size)
    for index, (image, study) in enumerate(samples):
        image_id = f"phantom-{seed}-{index:06d}"
        relative = f"images/{image_id}.png"
        Image.fromarray(image).save(root / relative)
        report = write_report(study, np.random.default_rng([seed, index, 1]))
        split = split_of(index, n)
        annotation[split].append(
            {
                "id": image_id,
                "report": report,
                "image_path": [relative],
                "split": split,
                "findings": study.to_list(),
            }
        )
    (root / "annotation.json").write_text(json.dumps(annotation, indent=1) + "\n")
    first = samples[:16]
    contact_sheet(
        [image for image, _ in first], [caption(s) for _, s in first], root / "contact_sheet.png"
    )
