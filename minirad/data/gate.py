"""The input gate: refuse, in one line, an image the report generator cannot read.

    radiograph = read_radiograph("chest.dcm", size=128)              # or raises InputRefusedError
    radiograph.pixels   (128, 128) float32 in [0, 1]
    radiograph.forced   ()  -- or, with force=True, the refusals that were overridden

The model was trained on frontal chest radiographs (phantoms of them). Shown a CT slice, a
lateral view, a colour photograph or a blank image, it still writes a confident chest report:
it has no way to say "I cannot read this". So the report pipeline asks two questions before the
model sees an image, and `read_image` (which reads any readable picture, for training too) is
left alone.

1. What does the file say it is? (DICOM only: a PNG says nothing.) Each of these is refused
   with its reason, and `force=True` reports on it anyway, the report marked with the reason:
   - Modality other than CR or DX (the two radiography modalities; CT, MR, NM, US, ... are not),
   - BodyPartExamined, when given, other than CHEST,
   - ViewPosition, when given, other than PA or AP (a lateral LL/RL, an oblique, a decubitus),
   - PhotometricInterpretation other than MONOCHROME1/2 (a radiograph is grey).
2. Do the pixels carry a picture? Never overridden, because there is nothing to read:
   - constant or near-constant pixels (all black, all white, a 1x1 image),
   - fewer than MIN_SIDE pixels on a side,
   - colour: red, green and blue that differ (a grey picture stored as RGB is fine),
   - values that are not finite after the rescale (minirad.data.readers refuses those itself).

The DICOM header is read first (without its pixels), so a CT is refused before it is decoded.
Why a module of its own rather than rules inside the reader: the reader answers "what are the
pixels", for training data too; the gate answers "should this model report on them", and the
two change for different reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minirad.data.readers import ImageReadError, decode_image, is_dicom, read_dicom_metadata, resize

__all__ = ["InputRefusedError", "Radiograph", "header_refusals", "pixel_refusal", "read_radiograph"]

RADIOGRAPHY = ("CR", "DX")  # computed and digital radiography
CHEST = ("CHEST",)
FRONTAL_VIEWS = ("PA", "AP")
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

# Pixels: the spread between the 1st and the 99th percentile below which an image is "constant"
# (5 grey levels of 255: JPEG noise on a blank page, not a radiograph), the smallest side, and
# the colour spread (readers.DecodedImage.colour_spread) above which an image is in colour.
MIN_CONTRAST = 0.02
MIN_SIDE = 32
MAX_COLOUR_SPREAD = 0.02


class InputRefusedError(ImageReadError):
    """The file reads, but is not an image this model can report on.

    refusal: the reason, one line. overridable: True for what the header says (the pipeline's
    force=True reports anyway), False for pixels that carry no picture.
    """

    def __init__(self, path: str | Path, refusal: str, overridable: bool) -> None:
        self.refusal = refusal
        self.overridable = overridable
        super().__init__(path, f"refused: {refusal}")


@dataclass(frozen=True)
class Radiograph:
    """The model's input, and the refusals that `force=True` overrode to get it (else ())."""

    pixels: np.ndarray
    forced: tuple[str, ...] = ()


def read_radiograph(path: str | Path, size: int, force: bool = False) -> Radiograph:
    """Read `path` for the model, resized to (size, size), or raise InputRefusedError (one line).

    force=True reports on a file whose header says it is not a frontal chest radiograph; its
    reasons come back in Radiograph.forced so that the report can say so. Pixels that carry no
    picture are refused whatever `force` says.
    """
    path = Path(path)
    refusals = header_refusals(read_dicom_metadata(path)) if is_dicom(path) else []
    if refusals and not force:
        raise InputRefusedError(path, "; ".join(refusals), overridable=True)
    decoded = decode_image(path)
    refusal = pixel_refusal(decoded.grey, decoded.colour_spread)
    if refusal is not None:
        raise InputRefusedError(path, refusal, overridable=False)
    return Radiograph(resize(decoded.grey, size), tuple(refusals))


def header_refusals(header: dict[str, object]) -> list[str]:
    """Why a DICOM header (readers.read_dicom_metadata) is not a frontal chest radiograph.

    An empty list means no reason. Each reason names the field and its value.
    """
    reasons = []
    modality = _field(header, "Modality")
    if modality not in RADIOGRAPHY:
        reasons.append(
            f"Modality {modality or 'not given'}: not a radiograph ({' or '.join(RADIOGRAPHY)})"
        )
    body_part = _field(header, "BodyPartExamined")
    if body_part and body_part not in CHEST:
        reasons.append(f"BodyPartExamined {body_part}: not the chest")
    view = _field(header, "ViewPosition")
    if view and view not in FRONTAL_VIEWS:
        reasons.append(f"ViewPosition {view}: not a frontal ({' or '.join(FRONTAL_VIEWS)}) view")
    photometric = _field(header, "PhotometricInterpretation")
    if photometric not in MONOCHROME:
        reasons.append(f"PhotometricInterpretation {photometric or 'not given'}: not grey")
    return reasons


def _field(header: dict[str, object], name: str) -> str:
    """A header value as upper-case text without padding; '' when absent."""
    value = header.get(name)
    return "" if value is None else str(value).strip().upper()


def pixel_refusal(grey: np.ndarray, colour_spread: float = 0.0) -> str | None:
    """Why these pixels carry no picture to report on, or None. grey: (H, W) in [0, 1]."""
    if not np.isfinite(grey).all():
        return "pixel values are not finite (NaN or inf)"
    if min(grey.shape) < MIN_SIDE:
        return f"image of {grey.shape[1]} x {grey.shape[0]} pixels: smaller than {MIN_SIDE} a side"
    low, high = np.percentile(grey, [1, 99])
    if high - low < MIN_CONTRAST:
        return f"constant or near-constant pixels (1st to 99th percentile {low:.3f} to {high:.3f})"
    if colour_spread > MAX_COLOUR_SPREAD:
        return f"a colour image (red, green and blue differ by {colour_spread:.3f} on average)"
    return None
