"""From an image file to a reviewed report: the whole pipeline behind `minirad report`.

    reporter = Reporter()                                  # the bundled default model
    report = reporter.report_file("chest.dcm", method="beam", width=3)
    print(report.text, report.review.verdict)

    read_radiograph (PNG/JPEG/DICOM -> grey [0, 1], through the input gate, minirad.data.gate)
    -> resize to the model's size (its checkpoint says) -> encoder + finding head
    -> decoder (greedy / beam / sample)
    -> calibrated probabilities, familiarity score -> review -> Report

The finding probabilities a Report carries are the calibrated ones, sigmoid(z / T), with the
temperatures stored in the checkpoint (minirad.report.familiarity.Calibration); the decoder
read the head's decisions P >= 0.5, which calibration leaves as they were. The image's
familiarity score and the model's threshold go into the review; a model output that is not
finite refuses the report (NonFiniteOutputError, one line).

On a GPU backend the model lives on the device (load_report_model puts it there) and each
image crosses twice: its pixels to the device before the encoder, and the decoded report, the
summary with the finding logits, and the attention maps back before the review, which reads
text.

A Report identifies its input by the file's name and the SHA-256 of its bytes, and the model by
its file name, SHA-256 and training provenance. It never carries anything from a DICOM header:
the gate reads the header's Modality, body part, view and photometry to refuse what is not a
frontal chest radiograph, and returns pixels only.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from minirad.autograd import Tensor, concatenate, no_grad
from minirad.backend import small_blas, to_device
from minirad.data.findings import FINDINGS
from minirad.data.gate import read_radiograph
from minirad.models.report_checkpoint import load_report_model, review_statistics
from minirad.report.decoding import Sentences, decode
from minirad.report.familiarity import Calibration, familiarity_blocks
from minirad.report.review import (
    SECTION_NAMES,
    Review,
    check_finite,
    format_report,
    review_report,
)

DEFAULT_MODEL = "default.npz"


def default_model_path() -> Path:
    """The bundled weights, inside the installed package (minirad/weights/default.npz)."""
    return Path(str(resources.files("minirad") / "weights" / DEFAULT_MODEL))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Report:
    """One generated, reviewed report and everything needed to render or audit it.

    words: the generated tokens; attention (len(words), G, G): where the decoder looked for
    each; probabilities: finding -> P from the finding head; cleaned: the decoder's text;
    text: the same formatted for reading.
    """

    source: str
    source_sha256: str
    words: list[str]
    attention: np.ndarray
    probabilities: dict[str, float]
    cleaned: str
    text: str
    review: Review
    model: dict
    decoding: dict
    seconds: float
    image: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    forced: tuple[str, ...] = ()  # the input gate's refusals that force=True overrode

    def to_dict(self) -> dict:
        """JSON-able: findings with probabilities, review, model and input identifiers."""
        return {
            "input": {"file": self.source, "sha256": self.source_sha256},
            "model": self.model,
            "decoding": self.decoding,
            "report": self.text,
            "findings": [
                {
                    "name": name,
                    "probability": _finite_or_none(round(self.probabilities[name], 4)),
                    "stated_in_report": self.review.stated.get(name),
                }
                for name in FINDINGS
            ],
            "review": self.review.to_dict(),
            "seconds": round(self.seconds, 4),
            "forced": list(self.forced),
        }


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a number that is not finite is written as null (valid JSON always).
    The Reporter refuses such reports; this keeps a Report made by hand writable too."""
    return value if math.isfinite(value) else None


class Reporter:
    """A loaded model, ready to report on images (load once, report many)."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            hint = (
                " (the bundled weights are missing: reinstall minirad)"
                if model_path is None
                else ""
            )
            raise ValueError(f"{path}: model file not found{hint}")
        self.model, self.vocab, meta = load_report_model(path)
        self.familiarity, self.calibration = review_statistics(meta)
        self.sentences = Sentences.of(self.vocab)
        info = meta.get("info", {})
        self.required_sections = tuple(info.get("sections", SECTION_NAMES))
        self.model_id = {
            "file": path.name,
            "sha256": sha256_of(path),
            "epoch": info.get("epoch"),
            "val_clinical_f1": info.get("val_f1"),
            "cell": self.model.config.cell,
            "calibrated": self.calibration is not None,
        }

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def finding_probabilities(self, logits: np.ndarray) -> list[float]:
        """logits (K,) -> P per finding: calibrated if the model carries temperatures."""
        calibration = self.calibration or Calibration(np.ones(len(logits)))  # T = 1: as trained
        return [float(p) for p in calibration.probabilities(logits)]

    def familiarity_of(self, summary: np.ndarray, image: np.ndarray) -> tuple[float, float] | None:
        """(score, threshold) of one image from its summary (M,), None without statistics."""
        if self.familiarity is None:
            return None
        blocks = familiarity_blocks(summary[None], image[None, None])
        score = float(self.familiarity.score(np.concatenate(blocks, axis=1))[0])
        return score, self.familiarity.threshold

    def report_file(self, path: str | Path, force: bool = False, **decoding) -> Report:
        """Read one PNG/JPEG/DICOM and report on it; ImageReadError (one line) if unreadable.

        The input gate (minirad.data.gate) refuses what is not a frontal chest radiograph with
        InputRefusedError; force=True reports anyway on what its header refuses, and the
        report's `forced` names the reasons overridden.
        """
        path = Path(path)
        radiograph = read_radiograph(path, self.image_size, force=force)
        report = self.report_image(radiograph.pixels, path.name, sha256_of(path), **decoding)
        report.forced = radiograph.forced
        return report

    def report_image(
        self,
        image: np.ndarray,
        source: str = "array",
        source_sha256: str = "",
        method: str = "beam",
        width: int = 3,
        temperature: float = 1.0,
        seed: int | None = 0,
    ) -> Report:
        """Report on one grey image (size x size, float in [0, 1])."""
        size = self.image_size
        if image.shape != (size, size):
            raise ValueError(f"image: expected shape ({size}, {size}), got {image.shape}")
        started = time.perf_counter()
        self.model.eval()
        with no_grad(), small_blas():  # small matrices: one BLAS thread (minirad.backend)
            pixels = to_device(image[None, None].astype(np.float32))  # (1, 1, S, S): one copy
            encoded = self.model.encode(Tensor(pixels))
            (decoded,) = decode(
                self.model,
                encoded,
                method,
                width=width,
                temperature=temperature,
                rng=seed,
                block_sentences=self.sentences,  # a beam repeats no sentence in a section
            )
        # The summary and the finding logits side by side: one copy back.
        outputs = concatenate([encoded.summary, encoded.finding_logits], axis=1).numpy()[0]
        M = self.model.config.summary_size
        summary, logits = outputs[:M].astype(np.float64), outputs[M:].astype(np.float64)
        check_finite(
            {
                "image summary": summary,
                "finding logits": logits,
                "attention maps": decoded.attention,
                "report log-probability": decoded.log_prob,
            }
        )
        probs = dict(zip(FINDINGS, self.finding_probabilities(logits), strict=True))
        cleaned = self.vocab.decode(decoded.tokens)
        G = self.model.config.grid_side
        review = review_report(
            cleaned,
            probs,
            decoded.finished,
            self.required_sections,
            familiarity=self.familiarity_of(summary, image),
        )
        decoding: dict[str, object] = {"method": method}
        if method == "beam":
            decoding.update(width=width, block_sentences=True)
        if method == "sample":
            decoding.update(temperature=temperature, seed=seed)
        return Report(
            source=source,
            source_sha256=source_sha256,
            words=[self.vocab.tokens[i] for i in decoded.tokens],
            attention=decoded.attention.reshape(-1, G, G),
            probabilities=probs,
            cleaned=cleaned,
            text=format_report(cleaned),
            review=review,
            model=self.model_id,
            decoding=decoding,
            seconds=time.perf_counter() - started,
            image=image,
        )
