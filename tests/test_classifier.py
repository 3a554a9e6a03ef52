"""The seed's CNN classifier learns a two-class image folder; unreadable files are named.

The task: 32x32 grey noise, with (class "present") or without (class "absent") a bright disc
at a random place. A held-out folder made the same way must be classified > 95% correctly
after a few epochs on the numba backend (a few seconds on two cores once Numba's cache is warm).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minirad import backend, kernels
from minirad.models import CNNClassifier
from minirad.models.train_classifier import (
    evaluate_accuracy,
    load_image_folder,
    train_classifier,
)

SIZE = 32


def disc_image(rng: np.random.Generator, with_disc: bool) -> np.ndarray:
    """A SIZE x SIZE uint8 image: noisy grey background, plus a bright disc if asked."""
    pixels = 0.35 + 0.08 * rng.standard_normal((SIZE, SIZE))
    if with_disc:
        radius = rng.uniform(3.0, 6.0)
        cy, cx = rng.uniform(radius, SIZE - radius, size=2)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        pixels += 0.4 * ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2)
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


def write_disc_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for name, with_disc in (("absent", False), ("present", True)):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(disc_image(rng, with_disc)).save(root / name / f"{index:03d}.png")
    return root


def test_load_image_folder_shapes_labels_and_range(tmp_path):
    root = write_disc_folder(tmp_path / "data", per_class=3, seed=0)
    (root / "absent" / "notes.txt").write_text("not an image: skipped")
    images, labels, classes = load_image_folder(root, size=16)
    assert classes == ["absent", "present"]
    assert images.shape == (6, 1, 16, 16) and images.dtype == np.float32
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(tmp_path / "a" / "white.png")
    Image.fromarray(np.full((8, 8), 16384, dtype=np.uint16)).save(tmp_path / "b" / "grey.png")
    images, _, _ = load_image_folder(tmp_path, size=8)
    np.testing.assert_allclose(images[:, 0, 0, 0], [1.0, 16384 / 65535], rtol=1e-6)


def test_corrupt_image_raises_value_error_naming_it(tmp_path):
    root = write_disc_folder(tmp_path / "data", per_class=2, seed=0)
    bad = root / "present" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(root, size=SIZE)


def test_truncated_image_raises_value_error_naming_it(tmp_path):
    root = write_disc_folder(tmp_path / "data", per_class=2, seed=0)
    whole = (root / "absent" / "000.png").read_bytes()
    (root / "absent" / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        load_image_folder(root, size=SIZE)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="root: .* is not a directory"):
        load_image_folder(tmp_path / "missing", size=SIZE)
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="holds no PNG or JPEG"):
        load_image_folder(tmp_path, size=SIZE)


def test_classifier_shapes():
    model = CNNClassifier(image_size=16, rng=0)
    names = [name for name, _ in model.named_parameters()]
    assert names[0] == "features.0.weight" and model.features[0].weight.shape == (32, 1, 3, 3)
    assert model.head[1].weight.shape == (128, 128 * 2 * 2)
    assert model.head[3].weight.shape == (1, 128)
    with pytest.raises(ValueError, match="image_size"):
        CNNClassifier(image_size=4)


@pytest.mark.skipif(
    kernels.why_unavailable("numba") is not None,
    reason=f"numba backend unavailable: {kernels.why_unavailable('numba')}",
)
def test_classifier_learns_disc_vs_no_disc(tmp_path):
    train_root = write_disc_folder(tmp_path / "train", per_class=60, seed=1)
    test_root = write_disc_folder(tmp_path / "test", per_class=60, seed=2)
    with backend.use_backend("numba"):
        start = time.perf_counter()
        model, history = train_classifier(
            train_root, epochs=6, batch_size=16, lr=2e-3, seed=0, size=SIZE
        )
        images, labels, classes = load_image_folder(test_root, size=SIZE)
        accuracy = evaluate_accuracy(model, images, labels)
        seconds = time.perf_counter() - start
    print(f"train loss {history.loss}, train accuracy {history.accuracy}")
    print(f"held-out accuracy {accuracy:.3f}, {seconds:.1f} s")
    assert history.classes == classes == ["absent", "present"]
    assert len(history.loss) == len(history.accuracy) == len(history.lr) == 6
    assert history.lr[0] == 2e-3 and history.lr[-1] < history.lr[0]  # annealed
    assert history.loss[-1] < history.loss[0]
    assert accuracy > 0.95, f"held-out accuracy {accuracy:.3f}; history {history}"


def test_training_is_repeatable_with_a_seed(tmp_path):
    root = write_disc_folder(tmp_path / "data", per_class=4, seed=0)
    runs = [train_classifier(root, epochs=2, batch_size=3, lr=1e-3, seed=7, size=8) for _ in "ab"]
    (model_a, history_a), (model_b, history_b) = runs
    assert history_a == history_b
    for (name, a), (_, b) in zip(
        model_a.named_parameters(), model_b.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(epochs=0), "^epochs: "),
        (dict(batch_size=0), "^batch_size: "),
        (dict(size=2.5), "^size: "),
        (dict(lr=0.0), "^lr: "),
    ],
)
def test_train_classifier_argument_errors(tmp_path, options, match):
    root = write_disc_folder(tmp_path / "data", per_class=1, seed=0)
    with pytest.raises(ValueError, match=match):
        train_classifier(root, **{**dict(epochs=1, batch_size=2, size=8), **options})


def test_train_classifier_needs_two_classes(tmp_path):
    root = write_disc_folder(tmp_path / "data", per_class=1, seed=0)
    (root / "third").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "third" / "a.png")
    with pytest.raises(ValueError, match="needs 2 class folders"):
        train_classifier(root, epochs=1, size=8)
