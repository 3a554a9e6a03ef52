"""A report model on disk: weights, vocabulary, preprocessing and provenance in one .npz.

    save_report_model("model.npz", model, vocab, info={"epoch": 7, ...})
    model, vocab, meta = load_report_model("model.npz")

The weights are the model's state_dict entries ("encoder.blocks.0.weight", ...). Everything else
travels as one JSON document in the entry "__meta__", stored as a NumPy unicode string (not an
object array), so the file still loads with allow_pickle=False:

    {"format": "minirad-report-model", "version": 1,
     "config": {...ReportModelConfig...},          the shapes: the model is rebuilt from it
     "vocabulary": {"tokens": [...]},              ids are indices into this list
     "preprocessing": {...},                       how an image becomes the model's input
     "info": {...}}                                provenance: data, seed, epoch, scores

Beside the weights, two statistics the review reads (minirad.report.familiarity), fitted after
training and stored as "extra" entries, so that they travel with the weights they describe:

    extra.familiarity.mean, .scale (F,), .precision (F, F), .threshold, .false_alarm_rate ()
    extra.calibration.temperatures (K,)

`add_review_statistics` adds them to a saved model without touching any other entry (the
bundled model got them that way, its weights bit for bit as they were trained), and
`review_statistics` reads them back; a model saved before they existed has none.

A model without its vocabulary is useless (an id means nothing), and one without its
preprocessing silently wrong (a 64-pixel model fed 128-pixel images), so they are never apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from minirad.data.vocab import Vocabulary
from minirad.models.config_check import check_model_config
from minirad.models.report_model import ReportModel, ReportModelConfig
from minirad.nn import checkpoint
from minirad.report.familiarity import Calibration, Familiarity, fit_review_statistics

FORMAT, VERSION = "minirad-report-model", 1
META_KEY = "__meta__"
FAMILIARITY_FIELDS = ("mean", "scale", "precision", "threshold", "false_alarm_rate")


def preprocessing_for(config: ReportModelConfig) -> dict:
    """How `minirad.data.readers.read_image` output becomes the model's input (see encode)."""
    return {
        "grey": "float32 in [0, 1] (minirad.data.readers.read_image)",
        "size": config.image_size,
        "resize": "bilinear",
        "first_image_only": True,
    }


def save_report_model(
    path: str | Path,
    model: ReportModel,
    vocab: Vocabulary,
    info: dict | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """Write model + vocabulary + preprocessing + `info` atomically to `path` (.npz).

    The weights are written from the model's state_dict, a host copy wherever the model lives.

    `extra` entries (e.g. the optimizer's state, prefixed "optimizer.") are stored beside the
    weights; `load_report_model` returns them in meta["extra"].
    """
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "vocabulary": vocab.to_dict(),
        "preprocessing": preprocessing_for(model.config),
        "info": info or {},
    }
    state = dict(model.state_dict())
    for name, value in (extra or {}).items():
        state[f"extra.{name}"] = value
    state[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    checkpoint.save(state, path)


def load_report_model(path: str | Path) -> tuple[ReportModel, Vocabulary, dict]:
    """The model (in eval mode), its vocabulary and the metadata (with "extra" entries).

    The model lives where the active backend computes (minirad.backend.active(), Module.to):
    on a GPU backend its weights are uploaded here, once each, so that reporting, evaluating
    or resuming training on it copies no weight again. The "extra" entries stay on the host
    (an optimizer's state goes where its parameters are when it is loaded).

    ValueError "<path>: <reason>" if the file is not a minirad report model or does not fit.
    """
    state = checkpoint.load(path)
    meta = _read_meta(state.pop(META_KEY, None), path)
    extra = {k[len("extra.") :]: state.pop(k) for k in list(state) if k.startswith("extra.")}
    try:
        check_model_config(meta["config"])  # types and sizes, before any array is allocated
        config = ReportModelConfig.from_dict(meta["config"])
        vocab = Vocabulary.from_dict(meta["vocabulary"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: bad model description ({error})") from None
    if len(vocab) != config.vocab_size:
        raise ValueError(
            f"{path}: the vocabulary has {len(vocab)} tokens, the model {config.vocab_size}"
        )
    model = ReportModel(config)
    model.load_state_dict(state, source=str(path))
    model.to()  # onto the active backend's device
    model.eval()
    meta["extra"] = extra
    return model, vocab, meta


def _read_meta(entry: np.ndarray | None, path: str | Path) -> dict:
    if entry is None:
        raise ValueError(f"{path}: not a minirad report model (no {META_KEY} entry)")
    try:
        meta = json.loads(str(entry[()]))
    except (json.JSONDecodeError, IndexError, TypeError) as error:
        raise ValueError(f"{path}: unreadable {META_KEY} ({error})") from None
    kind = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    if kind != FORMAT:
        raise ValueError(f"{path}: not a minirad report model (format {kind!r})")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{path}: report model format version {meta.get('version')}, "
            f"this minirad reads version {VERSION}"
        )
    return meta


def add_review_statistics(
    path: str | Path, familiarity: Familiarity, calibration: Calibration
) -> None:
    """Store both statistics in the saved model at `path` (atomically); every other entry of
    the file is written back exactly as it was read."""
    state = checkpoint.load(path)
    _read_meta(state.get(META_KEY), path)  # a report model, not any .npz
    for name in FAMILIARITY_FIELDS:
        state[f"extra.familiarity.{name}"] = np.asarray(getattr(familiarity, name))
    state["extra.calibration.temperatures"] = np.asarray(calibration.temperatures)
    checkpoint.save(state, path)


def store_review_statistics(
    path: str | Path,
    model: ReportModel,
    train_images: np.ndarray,
    val_images: np.ndarray,
    val_findings: np.ndarray,
) -> tuple[Familiarity, Calibration]:
    """Fit both statistics for `model` (minirad.report.familiarity.fit_review_statistics) and
    add them to its saved file `path`; returns them."""
    familiarity, calibration = fit_review_statistics(model, train_images, val_images, val_findings)
    add_review_statistics(path, familiarity, calibration)
    return familiarity, calibration


def review_statistics(meta: dict) -> tuple[Familiarity | None, Calibration | None]:
    """(familiarity, calibration) from load_report_model's meta; None for each one missing."""
    extra = meta.get("extra", {})
    familiarity = calibration = None
    if all(f"familiarity.{name}" in extra for name in FAMILIARITY_FIELDS):
        values = {name: extra[f"familiarity.{name}"] for name in FAMILIARITY_FIELDS}
        familiarity = Familiarity(
            mean=values["mean"],
            scale=values["scale"],
            precision=values["precision"],
            threshold=float(values["threshold"]),
            false_alarm_rate=float(values["false_alarm_rate"]),
        )
    if "calibration.temperatures" in extra:
        calibration = Calibration(extra["calibration.temperatures"])
    return familiarity, calibration
