"""Dataset formats: turn a folder of files into a list of `Record`s, one per study.

    Record(id, image_paths, report, split, findings)

Three formats, each the field's own, so that real data trains the same way as the phantom:

* folder-per-class      root/<class name>/<image files>        (the torchvision ImageFolder layout)
* R2Gen annotation.json {"train": [...], "val": [...], "test": [...]}  (R2Gen, R2GenCMN, ...)
* IU X-Ray CSV pair     indiana_reports.csv + indiana_projections.csv  (the Kaggle release)

A loader only reads text and checks that the image files exist; pixels are read later, by
`minirad.data.readers.read_image`. Every problem raises ValueError with one line naming the file
and the item, because a data set with one bad entry among thousands must say which one.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "Record",
    "hash_split",
    "load_image_folder_records",
    "load_iu_xray_records",
    "load_r2gen_annotation",
]

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")


@dataclass
class Record:
    """One study: its images (frontal first where known), its report text and its split.

    `findings` holds structured labels when the format has them, otherwise None: a dict (a class
    name: {"label": "normal"}) or a list of Finding dicts (the phantom's ground truth).
    """

    id: str
    image_paths: list[Path]
    report: str
    split: str
    findings: dict | list[dict] | None = None


# ---------------------------------------------------------------------------------------------
# Folder per class
# ---------------------------------------------------------------------------------------------


def load_image_folder_records(root: str | Path, split: str = "train") -> list[Record]:
    """One record per image in root/<class>/, findings = {"label": class}; no report text.

    Class folders and the images inside them are sorted by name, so the order (and any class
    index built from it) is the same on every machine.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    records = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(p for p in class_dir.iterdir() if _is_image_file(p)):
            record_id = f"{class_dir.name}/{image.stem}"
            findings = {"label": class_dir.name}
            records.append(Record(record_id, [image], "", split, findings))
    if not records:
        raise ValueError(f"{root}: no images found in class sub-folders")
    return records


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


# ---------------------------------------------------------------------------------------------
# R2Gen annotation.json
# ---------------------------------------------------------------------------------------------


def load_r2gen_annotation(
    json_path: str | Path, image_dir: str | Path | None = None
) -> list[Record]:
    """Read an R2Gen-style annotation.json into records, in file order (train, val, test).

    Format: {"train": [item, ...], "val": [...], "test": [...]}, each item
    {"id": ..., "report": "...", "image_path": ["<relative path>", ...], "findings": {...}?}.
    As in R2Gen, image paths are relative to `image_dir`, which defaults to the json's folder.
    """
    json_path = Path(json_path)
    image_dir = json_path.parent if image_dir is None else Path(image_dir)
    annotation = _read_json(json_path)
    unknown = sorted(set(annotation) - set(SPLITS))
    if unknown:
        raise ValueError(f"{json_path}: unknown split keys {unknown}, expected {list(SPLITS)}")
    records = []
    for split in SPLITS:
        items = annotation.get(split, [])
        if not isinstance(items, list):
            raise ValueError(f"{json_path}: '{split}' must be a list of items")
        for index, item in enumerate(items):
            where = f"{json_path}: {split}[{index}]"
            records.append(_r2gen_record(item, split, image_dir, where))
    _check_unique_ids(records, json_path)
    return records


def _read_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({' '.join(str(e).split())})") from None
    except RecursionError:  # [[[[...]]]] 100,000 deep: Python's parser recurses once per level
        raise ValueError(f"{path}: not valid JSON (arrays or objects nested too deeply)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object with train/val/test lists")
    return data


def _r2gen_record(item: object, split: str, image_dir: Path, where: str) -> Record:
    """Check one annotation item and turn it into a Record; `where` names it in errors."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: item must be an object")
    missing = [key for key in ("id", "report", "image_path") if key not in item]
    if missing:
        raise ValueError(f"{where} (id {item.get('id')!r}): missing key(s) {missing}")
    where = f"{where} (id {item['id']!r})"
    if not isinstance(item["report"], str):
        raise ValueError(f"{where}: 'report' must be a string")
    paths = item["image_path"]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ValueError(f"{where}: 'image_path' must be a non-empty list of paths")
    for path in paths:
        if not _stays_inside(path):
            raise ValueError(
                f"{where}: image path {path!r} must be a relative path inside {image_dir}"
            )
    image_paths = [image_dir / p for p in paths]
    for image in image_paths:
        if not image.is_file():
            raise ValueError(f"{where}: image file not found: {image}")
    findings = item.get("findings")
    if findings is not None and not _is_findings(findings):
        raise ValueError(
            f"{where}: 'findings' must be an object, or a list of objects each with a 'name'"
        )
    return Record(str(item["id"]), image_paths, item["report"], split, findings)


def _stays_inside(relative: str) -> bool:
    """Whether a path from an annotation names a file inside its data folder.

    An annotation is data, and data can come from anyone: "/etc/passwd" or "../../x.png" would
    have a training run read (and a report show) a file that is not part of the dataset. The
    test is on the text of the path, not on where it resolves, so that a data folder whose
    images/ is a symbolic link to another disk still works.
    """
    path = PurePosixPath(relative.replace("\\", "/"))
    if path.is_absolute() or PureWindowsPath(relative).drive:
        return False
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return False
    return True


def _is_findings(value: object) -> bool:
    """A findings entry is a dict (labels of any kind) or a list of Finding dicts (the phantom's
    ground truth: [{"name": "nodule", "side": "left", ...}, ...])."""
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and all(
        isinstance(f, dict) and isinstance(f.get("name"), str) for f in value
    )


def _check_unique_ids(records: list[Record], source: Path) -> None:
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ValueError(f"{source}: duplicate id {record.id!r}")
        seen.add(record.id)


# ---------------------------------------------------------------------------------------------
# IU X-Ray CSV pair
# ---------------------------------------------------------------------------------------------

IU_REPORT_COLUMNS = ("uid", "findings", "impression")
IU_PROJECTION_COLUMNS = ("uid", "filename", "projection")


def load_iu_xray_records(
    reports_csv: str | Path,
    projections_csv: str | Path,
    image_dir: str | Path | None = None,
    split: str | Mapping[str, str] | None = None,
) -> list[Record]:
    """Join indiana_reports.csv and indiana_projections.csv into one record per uid.

    Images come frontal first (then the others, in CSV order); the report is
    "FINDINGS: <findings> IMPRESSION: <impression>", leaving out an empty section. Studies with
    no image or with neither section are skipped: they have nothing to learn from. `image_dir`
    (default: the projections CSV's folder) holds the files named in `filename`. `split` is one
    split for every record, a {uid: split} mapping, or None for `hash_split(uid)` (70/10/20).
    """
    reports_csv, projections_csv = Path(reports_csv), Path(projections_csv)
    image_dir = projections_csv.parent if image_dir is None else Path(image_dir)
    images = _iu_images_by_uid(projections_csv, image_dir)
    records = []
    for row_number, row in enumerate(_read_csv(reports_csv, IU_REPORT_COLUMNS), start=2):
        uid = row["uid"].strip()
        report = _iu_report_text(row["findings"], row["impression"])
        if not uid:
            raise ValueError(f"{reports_csv}: line {row_number}: empty uid")
        if uid not in images or not report:
            continue
        record_split = _choose_split(uid, split, reports_csv)
        records.append(Record(uid, images[uid], report, record_split, None))
    _check_unique_ids(records, reports_csv)
    return records


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """All rows of a CSV as dicts; ValueError if the file or a required column is missing."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}, found {columns}")
            return [{k: v or "" for k, v in row.items() if k is not None} for row in reader]
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: cannot read CSV ({' '.join(str(e).split())})") from None


def _iu_images_by_uid(projections_csv: Path, image_dir: Path) -> dict[str, list[Path]]:
    """{uid: image paths, frontal first}; ValueError naming the row if a file is missing."""
    frontal: dict[str, list[Path]] = {}
    other: dict[str, list[Path]] = {}
    rows = _read_csv(projections_csv, IU_PROJECTION_COLUMNS)
    for row_number, row in enumerate(rows, start=2):
        uid, filename = row["uid"].strip(), row["filename"].strip()
        if not uid or not filename:
            raise ValueError(f"{projections_csv}: line {row_number}: empty uid or filename")
        image = image_dir / filename
        if not image.is_file():
            raise ValueError(
                f"{projections_csv}: line {row_number} (uid {uid}): image file not found: {image}"
            )
        is_frontal = row["projection"].strip().lower() == "frontal"
        (frontal if is_frontal else other).setdefault(uid, []).append(image)
    uids = list(dict.fromkeys([*frontal, *other]))
    return {uid: frontal.get(uid, []) + other.get(uid, []) for uid in uids}


def _iu_report_text(findings: str, impression: str) -> str:
    """'FINDINGS: ... IMPRESSION: ...' with whitespace collapsed and empty sections left out."""
    sections = []
    for title, text in (("FINDINGS", findings), ("IMPRESSION", impression)):
        text = " ".join(text.split())
        if text:
            sections.append(f"{title}: {text}")
    return " ".join(sections)


def _choose_split(uid: str, split: str | Mapping[str, str] | None, source: Path) -> str:
    if split is None:
        return hash_split(uid)
    chosen = split if isinstance(split, str) else split.get(uid)
    if chosen not in SPLITS:
        raise ValueError(f"{source}: uid {uid}: split {chosen!r} is not one of {list(SPLITS)}")
    return chosen


def hash_split(key: str, fractions: tuple[int, int, int] = (70, 10, 20)) -> str:
    """A split chosen from a hash of `key`: the same on every machine and every run.

    Python's hash() changes between runs (PYTHONHASHSEED), so SHA-256 is used. A study keeps its
    split when the data set grows, which a shuffled index would not guarantee.
    """
    if len(fractions) != 3 or sum(fractions) != 100 or min(fractions) < 0:
        raise ValueError(f"fractions must be three percentages summing to 100, got {fractions}")
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    train, val, _ = fractions
    if bucket < train:
        return "train"
    return "val" if bucket < train + val else "test"
