"""Read one radiograph from disk as a float32 grey image in [0, 1].

    read_image(path, size=None) -> np.ndarray, float32, shape (H, W) or (size, size)

Two kinds of file reach a report generator:

* ordinary pictures (PNG, JPEG, TIFF; 8 or 16 bits; grey or colour), read with Pillow. The EXIF
  orientation is applied (a phone or a viewer stores a rotated JPEG upright and says so in a
  tag), colour is turned into grey with Pillow's 'L' weights (0.299 R + 0.587 G + 0.114 B), 8-bit
  values are divided by 255 and 16-bit values by 65535;
* DICOM files, the hospital format, read with pydicom. A DICOM stores raw detector numbers, not
  brightness, so three steps from the standard turn them into a picture a radiologist would see:
  the modality LUT (Rescale Slope/Intercept), the VOI LUT or window (which range of values is
  shown), and the photometric interpretation (MONOCHROME1 means "high value = dark").

Every failure raises `ImageReadError` with one line naming the file and the reason, so a data
loader can report a bad file among thousands without a library traceback: a header field that
is not a number, a DICOM that declares more pixels than Pillow's decompression-bomb limit
(checked before any pixel is decoded), a value that is not finite after the rescale or window.

`read_image` reads whatever is a readable picture. Whether a report generator should report on
it (a CT slice, a lateral view, a colour photograph, a blank image) is the input gate's question:
see minirad.data.gate, which reads through `decode_image` and `read_dicom_metadata` here.

Patient identifiers in a DICOM header never leave this module: `read_image` returns pixels
only, and `read_dicom_metadata` returns only the technical fields in `DICOM_METADATA_FIELDS`.
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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
from pydicom.multival import MultiValue

__all__ = [
    "DICOM_METADATA_FIELDS",
    "DecodedImage",
    "ImageReadError",
    "decode_image",
    "is_dicom",
    "read_dicom_metadata",
    "read_image",
]

DICOM_SUFFIXES = (".dcm", ".dicom")
PILLOW_FORMATS = ("PNG", "JPEG", "TIFF")
# The first bytes of each format: a file that starts like a PNG but does not open is a corrupt
# PNG, not "not a PNG".
SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\0": "TIFF",
    b"MM\0*": "TIFF",
}
LUMA = (0.299, 0.587, 0.114)  # Pillow's 'L' weights (ITU-R 601)

# The only header fields that may leave this module: technical, never identifying.
DICOM_METADATA_FIELDS = (
    "Modality",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "SamplesPerPixel",
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


@dataclass(frozen=True)
class DecodedImage:
    """A file's pixels as grey, and how coloured they were before they became grey.

    grey (H, W) float32 in [0, 1]; colour_spread: the mean over pixels of max(R, G, B) -
    min(R, G, B), in [0, 1]: 0 for a grey file (and for colour channels that are all equal).
    """

    grey: np.ndarray
    colour_spread: float = 0.0


# ---------------------------------------------------------------------------------------------
# The entry points
# ---------------------------------------------------------------------------------------------


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or DICOM radiograph as float32 grey values in [0, 1].

    Returns shape (H, W), or (size, size) when `size` is given (resized with Pillow's bilinear
    filter, which averages over the source pixels when shrinking). Raises ImageReadError for a
    missing, empty, truncated, corrupt or non-image file.
    """
    image = decode_image(path).grey
    return image if size is None else resize(image, size)


def decode_image(path: str | Path) -> DecodedImage:
    """The pixels of a PNG, JPEG, TIFF or DICOM file as grey (H, W), with their colour spread."""
    path = Path(path)
    _check_file(path)
    decoded = _read_dicom(path) if is_dicom(path) else _read_pillow(path)
    if not np.isfinite(decoded.grey).all():  # a NaN slope, a window of inf, ...
        raise ImageReadError(path, "pixel values are not finite (NaN or inf) after rescale")
    return decoded


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
    """Refuse, with a clear reason, what is not a readable non-empty file.

    os.stat says why a path cannot be read (Path.exists() only says False): a symbolic link that
    points to itself is a loop, not a missing file, and a folder without permission is neither.
    """
    try:
        status = os.stat(path)
    except OSError as error:
        raise ImageReadError(path, _stat_reason(path, error)) from None
    if not path.is_file():
        raise ImageReadError(path, "not a file")
    if status.st_size == 0:
        raise ImageReadError(path, "file is empty")


def _stat_reason(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return (
            "broken symbolic link (its target does not exist)"
            if path.is_symlink()
            else "no such file"
        )
    if error.errno == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    return error.strerror or type(error).__name__


def resize(image: np.ndarray, size: int) -> np.ndarray:
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


def _read_pillow(path: Path) -> DecodedImage:
    """Decode a PNG/JPEG/TIFF with Pillow, turn it upright (EXIF) and scale it to [0, 1].

    Pillow's decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on, and its warning is
    turned into an error: a small file that claims billions of pixels is refused before decoding.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PILLOW_FORMATS) as im:
                im.load()  # Image.open is lazy: truncation and corruption show up here
                upright = ImageOps.exif_transpose(im)  # as every viewer shows it
                return DecodedImage(_pillow_to_grey(upright, path), _colour_spread(upright))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        limit = Image.MAX_IMAGE_PIXELS
        reason = f"image too large (decompression-bomb limit {limit} pixels): {e}"
        raise ImageReadError(path, reason) from None
    except Image.UnidentifiedImageError:
        kind = _format_by_signature(path)
        if kind is not None:  # a PNG whose checksum is wrong is still a PNG, a broken one
            raise ImageReadError(
                path, f"corrupt {kind} file (it starts like one but does not open)"
            ) from None
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


def _colour_spread(im: Image.Image) -> float:
    """How far the colour channels of `im` differ: mean of max(R, G, B) - min(R, G, B) in [0, 1]."""
    if im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16"):
        return 0.0  # grey modes have one channel
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def _format_by_signature(path: Path) -> str | None:
    """'PNG', 'JPEG' or 'TIFF' if the file starts with that format's signature, else None."""
    with path.open("rb") as f:
        start = f.read(8)
    return next((kind for magic, kind in SIGNATURES.items() if start.startswith(magic)), None)


# ---------------------------------------------------------------------------------------------
# DICOM through pydicom
# ---------------------------------------------------------------------------------------------


def _read_dicom(path: Path) -> DecodedImage:
    """Read a single-frame DICOM and render it as the radiologist would see it.

    Monochrome images go through the modality and VOI LUTs; an RGB (or YBR, which pydicom turns
    into RGB) image becomes grey with the luma weights, as a colour picture does.
    """
    ds = _dcmread(path)
    _check_dicom_image(path, ds)
    try:
        stored = ds.pixel_array
    except Exception as e:  # truncated pixel data, unsupported compression, ...
        raise ImageReadError(path, f"cannot decode pixel data ({type(e).__name__}: {e})") from None
    samples = _int_field(path, ds, "SamplesPerPixel", 1)
    rows, columns = _int_field(path, ds, "Rows", 0), _int_field(path, ds, "Columns", 0)
    if stored.shape != (rows, columns, *([samples] if samples > 1 else [])):
        raise ImageReadError(
            path, f"decoded pixels of shape {stored.shape} do not match the header"
        )
    if samples == 3:
        return _dicom_colour_to_grey(path, stored, ds)
    return DecodedImage(_render_dicom(path, stored, ds))


def _dcmread(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """pydicom.dcmread, with its errors turned into one-line ImageReadErrors."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no 'DICM' marker at byte 128)") from None
    except Exception as e:
        raise ImageReadError(path, f"corrupt DICOM file ({type(e).__name__}: {e})") from None


MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


def _check_dicom_image(path: Path, ds: Dataset) -> None:
    """Refuse, before decoding, DICOM objects that are not one picture we can render.

    Reports and other objects without pixels, multi-frame series, palette colour, a number of
    samples per pixel that does not fit the photometric interpretation, and more pixels than
    Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): a compressed file of a few
    kilobytes can declare 30000 x 30000 pixels, and decoding would allocate them all.
    """
    if "PixelData" not in ds:
        modality = ds.get("Modality", "not given")
        raise ImageReadError(path, f"DICOM object has no pixel data (Modality {modality})")
    frames = _int_field(path, ds, "NumberOfFrames", 1)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames) is not supported")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    samples = _int_field(path, ds, "SamplesPerPixel", 1)
    expected = 1 if photometric in MONOCHROME else 3 if photometric in COLOUR else None
    if expected is None:
        raise ImageReadError(path, f"photometric interpretation {photometric!r} is not supported")
    if samples != expected:
        raise ImageReadError(
            path, f"SamplesPerPixel {samples} does not fit {photometric} ({expected} expected)"
        )
    pixels = _int_field(path, ds, "Rows", 0) * _int_field(path, ds, "Columns", 0) * frames
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and pixels > limit:
        raise ImageReadError(
            path, f"image too large ({pixels} pixels; decompression-bomb limit {limit} pixels)"
        )
    _check_window(path, ds)


def _int_field(path: Path, ds: Dataset, name: str, default: int) -> int:
    """A header field that must be a whole number >= 0, or `default` when it is absent or empty."""
    value = ds.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImageReadError(path, f"{name} {str(value)!r} is not a whole number") from None
    if number < 0:
        raise ImageReadError(path, f"{name} {number} is negative")
    return number


def _check_window(path: Path, ds: Dataset) -> None:
    """Window and rescale must be finite numbers, the width >= 1: what apply_voi_lut needs, and
    what keeps NaN out of the pixels (pydicom's own message for a NaN centre names no field)."""
    for name in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
        value = ds.get(name)
        if value is None or value == "":
            continue
        values = list(value) if isinstance(value, MultiValue) else [value]  # "40\\400": several
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ImageReadError(path, f"{name} {str(value)!r} is not a number") from None
        if not all(math.isfinite(v) for v in numbers):
            raise ImageReadError(path, f"{name} {str(value)!r} is not a finite number")
        if name == "WindowWidth" and min(numbers) < 1:  # the standard's rule for a linear window
            raise ImageReadError(path, f"WindowWidth {str(value)!r} must be >= 1")


def _dicom_colour_to_grey(path: Path, stored: np.ndarray, ds: Dataset) -> DecodedImage:
    """(H, W, 3) RGB stored values -> grey in [0, 1] with the luma weights, and the spread."""
    top = float(2 ** _int_field(path, ds, "BitsStored", 8) - 1)
    rgb = np.clip(stored.astype(np.float64) / top, 0.0, 1.0)
    grey = (rgb @ np.array(LUMA)).astype(np.float32)
    return DecodedImage(grey, float((rgb.max(axis=2) - rgb.min(axis=2)).mean()))


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
    if not (np.isfinite(values).all() and math.isfinite(span)):
        raise ImageReadError(path, "pixel values are not finite (NaN or inf) after rescale")
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
    ds = _dcmread(path, stop_before_pixels=True)
    metadata: dict[str, object] = {}
    for name in DICOM_METADATA_FIELDS:
        value = ds.get(name)
        metadata[name] = (
            None if value is None else (int(value) if isinstance(value, int) else str(value))
        )
    return metadata
