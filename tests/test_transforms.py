"""Preprocessing and augmentation: shapes, determinism, identities, and no left-right flip."""

from __future__ import annotations

import numpy as np
import pytest

from minirad.data.transforms import (
    add_noise,
    adjust_contrast,
    augment,
    normalise,
    prepare,
    shift_and_rotate,
)


def marker_image(n: int = 64) -> np.ndarray:
    """Dark image with a bright square in the image's left third."""
    image = np.zeros((n, n), np.float32)
    image[n // 2 - 4 : n // 2 + 4, 8:16] = 1.0
    return image


def test_prepare_resizes_and_keeps_float32():
    out = prepare(np.random.default_rng(0).random((100, 80)).astype(np.float32), 32)
    assert out.shape == (32, 32) and out.dtype == np.float32


def test_prepare_refuses_colour():
    with pytest.raises(ValueError, match="image: expected a 2-D grey image"):
        prepare(np.zeros((8, 8, 3)), 4)


def test_normalise():
    np.testing.assert_allclose(normalise(np.array([0.5, 0.75]), 0.5, 0.25), [0.0, 1.0])


def test_identities():
    image = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    np.testing.assert_allclose(shift_and_rotate(image, 0.0, (0.0, 0.0)), image, atol=1e-6)
    np.testing.assert_allclose(adjust_contrast(image, 1.0, 1.0), image, atol=1e-6)
    np.testing.assert_allclose(add_noise(image, 0.0, np.random.default_rng(0)), image)


def test_shift_moves_content_the_right_way():
    shifted = shift_and_rotate(marker_image(), 0.0, (5.0, 0.0))
    columns = np.nonzero(shifted.max(axis=0) > 0.5)[0]
    assert columns.min() == 13 and columns.max() == 20


def test_augment_is_deterministic_per_rng_and_never_flips():
    image = marker_image()
    a = augment(image, np.random.default_rng(7))
    b = augment(image, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    for seed in range(20):
        out = augment(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        left, right = out[:, :32].mean(), out[:, 32:].mean()
        assert left > right, f"seed {seed}: the marker moved to the other side"
