"""Preprocessing and augmentation of grey radiographs (float32 arrays in [0, 1], shape (H, W)).

    prepare(image, size)                -> resized to (size, size)
    normalise(image, mean, std)         -> (image - mean) / std
    augment(image, rng)                 -> a small random rotation and shift, contrast and noise

There is deliberately no horizontal flip: a report says "left pleural effusion", and a flipped
image with the same report would teach the model that left and right are interchangeable. Real
radiographs vary in positioning (a few degrees, a few percent of shift), exposure (contrast,
gamma) and quantum noise, so those are what augmentation imitates, and only mildly: a finding
must stay where the report says it is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def prepare(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to (size, size), done in float so 16-bit precision is not lost."""
    if image.ndim != 2:
        raise ValueError(f"image: expected a 2-D grey image, got shape {image.shape}")
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def normalise(image: np.ndarray, mean: float = 0.5, std: float = 0.25) -> np.ndarray:
    """(image - mean) / std: inputs centred on zero train faster (see models/classifier.py)."""
    return ((image - mean) / std).astype(np.float32)


def shift_and_rotate(image: np.ndarray, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate by `degrees` about the centre and shift by (dx, dy) pixels; borders filled with
    the image's darkest value (air outside the patient)."""
    h, w = image.shape
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    dx, dy = shift
    # PIL maps each output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f):
    # the inverse of "rotate about the centre, then shift".
    a, b, d, e = cos, sin, -sin, cos
    c = cx - a * (cx + dx) - b * (cy + dy)
    f = cy - d * (cx + dx) - e * (cy + dy)
    background = float(image.min())
    moved = Image.fromarray(image.astype(np.float32), mode="F").transform(
        (w, h),
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        Image.Resampling.BILINEAR,
        fillcolor=background,
    )
    return np.asarray(moved, dtype=np.float32)


def adjust_contrast(image: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """Exposure: contrast `gain` about the mean, then the gamma curve x ** gamma, in [0, 1]."""
    mean = float(image.mean())
    stretched = np.clip((image - mean) * gain + mean, 0.0, 1.0)
    return (stretched**gamma).astype(np.float32)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of standard deviation sigma, clipped back into [0, 1]."""
    noisy = image + rng.normal(0.0, sigma, size=image.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def augment(
    image: np.ndarray,
    rng: np.random.Generator,
    max_degrees: float = 5.0,
    max_shift: float = 0.04,
    max_gain: float = 0.15,
    max_noise: float = 0.02,
) -> np.ndarray:
    """A random, mild change of positioning, exposure and noise (never a flip)."""
    h, w = image.shape
    degrees = rng.uniform(-max_degrees, max_degrees)
    shift = (rng.uniform(-max_shift, max_shift) * w, rng.uniform(-max_shift, max_shift) * h)
    out = shift_and_rotate(image, degrees, shift)
    gain = 1.0 + rng.uniform(-max_gain, max_gain)
    gamma = float(np.exp(rng.uniform(-max_gain, max_gain)))
    out = adjust_contrast(out, gain, gamma)
    return add_noise(out, rng.uniform(0.0, max_noise), rng)
