"""Read one radiograph from disk as a float32 grey image in [0, 1].

    read_image(path, size=None) -> np.ndarray, float32, shape (H, W) or (size, size)

Two kinds of file reach a report generator:

* ordinary pictures (PNG, JPEG, TIFF; 8 or 16 bits; grey or colour), read with Pillow. Colour is
  turned into grey with Pillow's 'L' weights (0.299 R + 0.587 G + 0.114 B), 8-bit values are
  divided by 255 and 16-bit values by 65535;
* DICOM files, the hospital format, read with pydicom. A DICOM stores raw detector numbers, not
  brightness, so three steps from the standard turn them into a picture a radiologist would see:
  the modality LUT (Rescale Slope/Intercept), the VOI LUT or window (which range of values is
  shown), and the photometric interpretation (MONOCHROME1 means "high value = dark").

Every failure raises `ImageReadError` with one line naming the file and the reason, so a data
loader can report a bad file among thousands without a library traceback. Patient identifiers in
a DICOM header never leave this module: `read_image` returns pixels only, and
`read_dicom_metadata` returns only the technical fields listed in `DICOM_METADATA_FIELDS`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pydicom 2.x
    from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
        apply_modality_lut,
        apply_voi_lut,
    )

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

__all__ = [
    "DICOM_METADATA_FIELDS",
    "ImageReadError",
    "is_dicom",
    "read_dicom_metadata",
    "read_image",
]

DICOM_SUFFIXES = (".dcm", ".dicom")
PILLOW_FORMATS = ("PNG", "JPEG", "TIFF")

# The only header fields that may leave this module: technical, never identifying.
DICOM_METADATA_FIELDS = (
    "Modality",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsStored",
    "ViewPosition",
)


class ImageReadError(ValueError):
    """A file could not be read as an image; the message is one line: '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the library said
        super().__init__(f"{self.path}: {self.reason}")


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or DICOM radiograph as float32 grey values in [0, 1].

    Returns shape (H, W), or (size, size) when `size` is given (resized with Pillow's bilinear
    filter, which averages over the source pixels when shrinking). Raises ImageReadError for a
    missing, empty, truncated, corrupt or non-image file.
    """
    path = Path(path)
    _check_file(path)
    image = _read_dicom(path) if is_dicom(path) else _read_pillow(path)
    if size is not None:
        image = _resize(image, size)
    return image


def is_dicom(path: str | Path) -> bool:
    """True if the name ends in .dcm/.dicom or the file has the 'DICM' marker at byte 128.

    A DICOM Part-10 file starts with a 128-byte preamble followed by the four letters 'DICM';
    many DICOM files have no extension at all, so the marker is the reliable test.
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _check_file(path: Path) -> None:
    """Refuse, with a clear reason, what is not a readable non-empty file."""
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a float image to (size, size) with Pillow in 32-bit float mode (no 8-bit rounding)."""
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# PNG / JPEG / TIFF through Pillow
# ---------------------------------------------------------------------------------------------


def _read_pillow(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG/TIFF with Pillow and scale it to [0, 1].

    Pillow's decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on, and its warning is
    turned into an error: a small file that claims billions of pixels is refused before decoding.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PILLOW_FORMATS) as im:
                im.load()  # Image.open is lazy: truncation and corruption show up here
                return _pillow_to_grey(im, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        limit = Image.MAX_IMAGE_PIXELS
        reason = f"image too large (decompression-bomb limit {limit} pixels): {e}"
        raise ImageReadError(path, reason) from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not a PNG, JPEG, TIFF or DICOM image") from None
    except ImageReadError:
        raise
    except Exception as e:  # Pillow reports corrupt data as OSError, SyntaxError, zlib.error...
        raise ImageReadError(
            path, f"corrupt or truncated image ({type(e).__name__}: {e})"
        ) from None


def _pillow_to_grey(im: Image.Image, path: Path) -> np.ndarray:
    """Turn the Pillow image opened from `path` into float32 grey in [0, 1], keeping 16-bit
    precision."""
    if im.mode.startswith("I;16"):  # 16-bit grey, as Pillow opens 16-bit PNG and TIFF
        return np.asarray(im, dtype=np.float32) / 65535.0
    if im.mode == "I":  # 32-bit int mode; Pillow uses it for some 16-bit files
        values = np.asarray(im, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(path, "32-bit integer pixels are not supported")
        return (values / 65535.0).astype(np.float32)
    if im.mode == "F":
        raise ImageReadError(path, "floating-point pixels have no known scale")
    # Everything else (L, 1, P, RGB, RGBA, LA, CMYK, YCbCr) is 8-bit: convert to grey 'L'.
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------------------------
# DICOM through pydicom
# ---------------------------------------------------------------------------------------------


def _read_dicom(path: Path) -> np.ndarray:
    """Read a single-frame monochrome DICOM and render it as the radiologist would see it."""
    ds = _dcmread(path)
    _check_dicom_image(path, ds)
    try:
        stored = ds.pixel_array
    except Exception as e:  # truncated pixel data, unsupported compression, ...
        raise ImageReadError(path, f"cannot decode pixel data ({type(e).__name__}: {e})") from None
    return _render_dicom(path, stored, ds)


def _dcmread(path: Path) -> Dataset:
    """pydicom.dcmread, with its errors turned into one-line ImageReadErrors."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no 'DICM' marker at byte 128)") from None
    except Exception as e:
        raise ImageReadError(path, f"corrupt DICOM file ({type(e).__name__}: {e})") from None


def _check_dicom_image(path: Path, ds: Dataset) -> None:
    """Refuse DICOM objects that are not one grey picture (reports, multi-frame, colour)."""
    if "PixelData" not in ds:
        modality = ds.get("Modality", "not given")
        raise ImageReadError(path, f"DICOM object has no pixel data (Modality {modality})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames) is not supported")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(path, f"photometric interpretation {photometric!r} is not grey")


def _render_dicom(path: Path, stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> [0, 1] brightness: modality LUT, VOI LUT or window, MONOCHROME1 flip.

    1. Modality LUT: value = stored * RescaleSlope + RescaleIntercept, the physical quantity.
    2. VOI LUT or Window Center/Width: which band of values to show, mapped to grey. pydicom maps
       into the output range it computes from BitsStored and the rescale; we divide by that range.
       Without a VOI, the image's own minimum and maximum are used.
    3. MONOCHROME1 stores 'more X-ray absorbed = lower value', so bone would be dark; flip it so
       that, as in MONOCHROME2 and on a light box, bone is bright.
    """
    try:
        values = apply_modality_lut(stored, ds)
        voi_range = _voi_output_range(ds)
        if voi_range is not None:
            low, high = voi_range
            if ds.get("VOILUTSequence") and values.dtype.kind == "f":
                values = np.rint(values).astype(np.int64)  # a LUT table is indexed by integers
            values = apply_voi_lut(values, ds)
        else:
            low, high = float(values.min()), float(values.max())
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(path, f"cannot apply rescale/VOI ({type(e).__name__}: {e})") from None
    span = high - low
    image = (values.astype(np.float64) - low) / span if span > 0 else np.zeros(values.shape)
    image = np.clip(image, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32)


def _voi_output_range(ds: Dataset) -> tuple[float, float] | None:
    """The (low, high) range apply_voi_lut maps into, or None when there is no VOI.

    A VOI LUT table outputs 0 .. 2**bits - 1 (bits = 3rd value of LUTDescriptor). A window maps to
    the range the stored values could take after the modality LUT, as pydicom's apply_windowing
    computes it. pydicom prefers the table when both are present; so do we.
    """
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.BitsStored)
    if ds.PixelRepresentation == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return min(low, high), max(low, high)


def read_dicom_metadata(path: str | Path) -> dict[str, object]:
    """The non-identifying technical fields of a DICOM header (DICOM_METADATA_FIELDS only).

    Names, IDs, dates and institutions are never copied: a field not in the list cannot leak.
    Absent fields map to None. Pixel data is not read.
    """
    path = Path(path)
    _check_file(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no 'DICM' marker at byte 128)") from None
    except Exception as e:
        raise ImageReadError(path, f"corrupt DICOM file ({type(e).__name__}: {e})") from None
    metadata: dict[str, object] = {}
    for name in DICOM_METADATA_FIELDS:
        value = ds.get(name)
        metadata[name] = (
            None if value is None else (int(value) if isinstance(value, int) else str(value))
        )
    return metadata
