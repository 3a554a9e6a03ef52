"""How well does the review tell images unlike the training data apart? The table of issue 15.

    python benchmarks/familiarity.py --phantoms /tmp/phantoms7 /tmp/phantoms11 [--model M.npz]

For each category of input: how many there are, how many the reader refuses (one line, no
report), how many the familiarity score flags ("the image is unlike the training data"), and how
many leave with the verdict "accepted". The categories:

    phantoms DIR      the test split of a phantom dataset drawn with a seed never used in
                      training (`minirad data synth --n 2000 --seed 7 --out DIR`)
    CT, MR, NM, ...   pydicom's own test files (installed with pydicom, no download), one row
                      per modality; the DICOMs the reader refuses count as refused
    noise, ramps, blank, photograph-like     generated here with numpy, written as PNG/JPEG

The bundled model's familiarity statistics and temperatures were fitted with this script too,
on the phantoms it was trained on, leaving its weights as they were:

    minirad data synth --n 6000 --seed 0 --out /tmp/phantoms0
    python benchmarks/familiarity.py --refit /tmp/phantoms0 --model minirad/weights/default.npz

Each input goes through what `minirad report` runs: read_image, then Reporter.report_image
(beam search of width 3), so "accepted" means what a user would see.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from minirad.data.readers import read_image
from minirad.models.report_checkpoint import load_report_model, store_review_statistics
from minirad.models.report_data import ReportArrays, read_records, split
from minirad.report.pipeline import Reporter
from minirad.report.review import ACCEPTED, UNFAMILIAR

# pydicom's test files with pixels the reader might decode, by what they show.
PYDICOM_FILES = {
    "CT (pydicom)": ["CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"],
    "MR (pydicom)": ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                     "examples_overlay.dcm", "emri_small.dcm"],
    "NM (pydicom)": ["JPEG2000.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm"],
    "US (pydicom)": ["examples_rgb_color.dcm", "examples_palette.dcm", "examples_jpeg2k.dcm",
                     "ExplVR_BigEnd.dcm"],
    "secondary capture (pydicom)": ["image_dfl.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_rle.dcm",
                                    "SC_jpeg_no_color_transform.dcm"],
    "other DICOM (SEG, RTDOSE)": ["liver_1frame.dcm", "rtdose_1frame.dcm"],
}  # fmt: skip


def pydicom_files() -> dict[str, list[Path]]:
    """The files above that this pydicom installs (the larger ones come from pydicom-data)."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    found = {k: [folder / n for n in names if (folder / n).is_file()] for k, names in
             PYDICOM_FILES.items()}  # fmt: skip
    return {k: v for k, v in found.items() if v}


def generated_images(folder: Path, rng: np.random.Generator) -> dict[str, list[Path]]:
    """Images no radiograph looks like, written as 8-bit PNG (and JPEG for the photographs)."""
    S = 256
    y, x = np.mgrid[0:S, 0:S] / (S - 1)
    made: dict[str, list[np.ndarray]] = defaultdict(list)
    for _ in range(5):
        made["noise"].append(rng.random((S, S)))
        made["noise"].append(np.clip(rng.normal(0.5, 0.15, (S, S)), 0, 1))
        made["noise"].append(rng.random((8, 8)).repeat(32, 0).repeat(32, 1))  # blocky
    for angle in np.linspace(0, np.pi, 10):
        made["gradients"].append(np.cos(angle) * x + np.sin(angle) * y)
    made["gradients"] += [np.hypot(x - 0.5, y - 0.5) * 1.4, np.sin(12 * x) * 0.5 + 0.5]
    for value in (0.0, 0.02, 0.25, 0.5, 0.75, 0.98, 1.0):
        made["blank"].append(np.full((S, S), value))
    made["blank"].append(np.where(x < 0.5, 0.0, 1.0))  # two flat halves
    for _ in range(10):  # "photographs": smooth blobs, edges and texture at several scales
        image = sum(
            _smooth(rng.random((S // f, S // f))).repeat(f, 0).repeat(f, 1) / f**0.5
            for f in (2, 8, 32)
        )
        image = (image - image.min()) / (image.max() - image.min())
        made["photograph-like"].append(image)
    paths: dict[str, list[Path]] = defaultdict(list)
    for category, images in made.items():
        for i, image in enumerate(images):
            grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            suffix = ".jpg" if category == "photograph-like" and i % 2 else ".png"
            path = folder / f"{category.replace(' ', '_')}_{i}{suffix}"
            Image.fromarray(grey).save(path)
            paths[category].append(path)
    return dict(paths)


def _smooth(a: np.ndarray) -> np.ndarray:
    """A 5-point average, twice: blobs instead of speckle."""
    for _ in range(2):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5
    return a


def tally(reporter: Reporter, images) -> dict[str, int]:
    """images: iterable of Path or (S, S) array -> counts n, refused, flagged, accepted."""
    counts = {"n": 0, "refused": 0, "flagged": 0, "accepted": 0}
    for item in images:
        counts["n"] += 1
        try:
            image = item if isinstance(item, np.ndarray) else read_image(item, reporter.image_size)
            report = reporter.report_image(image)
        except ValueError:  # what `minirad report` prints as one line, with no report
            counts["refused"] += 1
            continue
        counts["flagged"] += UNFAMILIAR in report.review.reasons
        counts["accepted"] += report.review.verdict == ACCEPTED
    return counts


def phantom_images(folder: Path, size: int, limit: int | None):
    records = split(read_records(folder), "test")[:limit]
    for record in records:
        yield read_image(record.image_paths[0], size)


def refit(model_path: str, data: Path) -> None:
    """Fit the review statistics of the model at `model_path` on the train split of `data`
    (threshold and temperatures on its whole val split) and store them in the file."""
    model, vocab, _ = load_report_model(model_path)
    size, max_len = model.config.image_size, model.config.max_len
    records = read_records(data)
    train, val = (
        ReportArrays.from_records(split(records, name), vocab, size, max_len)
        for name in ("train", "val")
    )
    familiarity, calibration = store_review_statistics(
        model_path, model, train.images, val.images, val.findings
    )
    print(
        f"{model_path}: familiarity fitted on {len(train)} studies, threshold "
        f"{familiarity.threshold:.3f} ({familiarity.false_alarm_rate:.1%} of {len(val)} val "
        f"studies above it); temperatures {np.round(calibration.temperatures, 2).tolist()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phantoms", nargs="*", default=[], type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=None, help="phantom studies per folder")
    parser.add_argument("--refit", type=Path, default=None, help="fit on DATA's train/val")
    args = parser.parse_args(argv)
    if args.refit is not None:
        refit(args.model, args.refit)
    reporter = Reporter(args.model)
    rows = {}
    for folder in args.phantoms:
        rows[f"phantoms {folder.name} (test)"] = tally(
            reporter, phantom_images(folder, reporter.image_size, args.limit)
        )
    with tempfile.TemporaryDirectory() as scratch:
        inputs = {**pydicom_files(), **generated_images(Path(scratch), np.random.default_rng(0))}
        for category, paths in inputs.items():
            rows[category] = tally(reporter, paths)
    familiarity = reporter.familiarity
    if familiarity is not None:
        print(
            f"threshold {familiarity.threshold:.3f}; false-alarm rate on the validation "
            f"phantoms {familiarity.false_alarm_rate:.1%}"
        )
    print(f"| {'input':<30} | {'n':>4} | refused | flagged unfamiliar | accepted |")
    print(f"|{'-' * 32}|-----:|--------:|-------------------:|---------:|")
    for name, c in rows.items():
        accepted = f"{c['accepted']} ({c['accepted'] / c['n']:.1%})" if c["n"] else "0"
        print(
            f"| {name:<30} | {c['n']:>4} | {c['refused']:>7} | {c['flagged']:>18} | {accepted:>8} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
