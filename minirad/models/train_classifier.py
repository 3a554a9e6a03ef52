"""Train the seed's CNN classifier on a folder of images, one subfolder per class.

    root/
      normal/      0001.png  0002.jpg ...     -> label 0  (subfolder names sorted)
      abnormal/    0001.png  ...              -> label 1

    model, history = train_classifier("root", epochs=5, batch_size=16, lr=1e-3, seed=0, size=32)

Each image is read as grey, resized to size x size and scaled to [0, 1] (float32). Training is
mini-batch Adam on the binary cross-entropy of the model's logit:

    loss = mean_n [ max(z_n, 0) - z_n t_n + log(1 + exp(-|z_n|)) ],   t_n in {0, 1}

with the learning rate annealed along a half cosine from lr to 0 over the epochs (large steps
while the model is far off, small ones at the end so that the last epoch settles instead of
overshooting), and the examples reshuffled every epoch by a generator seeded with `seed`, so a
run is repeatable: the same seed draws the same initial weights and the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from minirad import functional as F
from minirad.autograd import Tensor, no_grad
from minirad.backend import to_device
from minirad.models.classifier import CNNClassifier
from minirad.models.running import SHOW_EVERY, RunningSums
from minirad.optim import Adam, CosineAnnealingLR, Optimizer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


# ----------------------------------------------------------------------------------------------
# Reading the folder
# ----------------------------------------------------------------------------------------------


def read_grey(path: Path, size: int) -> np.ndarray:
    """One image file as a (size, size) float32 array in [0, 1]; ValueError naming the file.

    8-bit images (and colour ones, converted to grey) are divided by 255; 16-bit grey PNGs,
    common for radiographs, by 65535, so neither loses its range.
    """
    try:
        with Image.open(path) as image:
            image.load()  # Image.open only reads the header: decode now, inside the try
            if image.mode.startswith("I"):  # "I;16", "I;16B", "I": 16-bit grey
                pixels = np.asarray(image, dtype=np.float32) / 65535.0
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error
    # Resize the float image ("F" mode) so 16-bit precision survives the interpolation.
    resized = Image.fromarray(pixels, mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def load_image_folder(root: str | Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images under root/<class>/ as (images (N, 1, size, size) float32, labels (N,) int64,
    class names). Labels number the subfolders in sorted order; other files are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"root: {root} has no class subfolders")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(f"root: class folder {root / name} holds no PNG or JPEG image")
        images += [read_grey(path, size) for path in files]
        labels += [label] * len(files)
    return np.stack(images)[:, None], np.array(labels, dtype=np.int64), classes


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


@dataclass
class History:
    """What happened per epoch: learning rate, mean training loss, training accuracy."""

    classes: list[str]
    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)


def train_classifier(
    root: str | Path,
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    size: int = 32,
) -> tuple[CNNClassifier, History]:
    """Train a CNNClassifier on the two-class folder `root`; returns (model, history).

    The accuracy of an epoch counts the predictions made on each batch before its update, so
    it costs no extra pass (and slightly underrates the model at the end of the epoch).
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("size", size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    images, labels, classes = load_image_folder(root, size)
    if len(classes) != 2:
        raise ValueError(f"root: a binary classifier needs 2 class folders, found {classes}")
    rng = np.random.default_rng(seed)  # one stream: initial weights, then the shuffles
    model = CNNClassifier(in_channels=1, image_size=size, rng=rng).to()  # the active backend
    optimizer = Adam(model.parameters(), lr=lr)
    schedule = CosineAnnealingLR(optimizer, T_max=epochs)
    history = History(classes)
    for epoch in range(epochs):
        history.lr.append(optimizer.lr)
        loss, accuracy = train_one_epoch(model, optimizer, images, labels, batch_size, rng, epoch)
        history.loss.append(loss)
        history.accuracy.append(accuracy)
        schedule.step()
    return model, history


def train_one_epoch(
    model: CNNClassifier,
    optimizer: Optimizer,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    epoch: int,
) -> tuple[float, float]:
    """One pass over a fresh permutation of images (N, 1, H, W) and labels (N,).

    Returns (mean loss, accuracy) over the epoch; `epoch` only labels the progress bar.
    """
    order = rng.permutation(len(labels))
    starts = range(0, len(order), batch_size)
    sums = RunningSums("loss", "correct")  # kept on the device: see minirad.models.running
    # disable=None: a bar on a terminal, silence in logs and tests (no TTY).
    with tqdm(starts, desc=f"epoch {epoch + 1}", unit="batch", disable=None, leave=False) as bar:
        for start in bar:
            batch = order[start : start + batch_size]
            x = to_device(images[batch])  # the batch's one trip to the device
            t = to_device(labels[batch].astype(np.float32))
            optimizer.zero_grad()
            logits = model(Tensor(x))
            loss = F.binary_cross_entropy_with_logits(logits, Tensor(t))
            loss.backward()
            optimizer.step()
            # z > 0 <=> sigmoid(z) > 1/2: the predicted class; its mean is the batch accuracy
            accuracy = ((logits.data > 0) == (t == 1)).mean()
            sums.add(len(batch), loss=loss.data, correct=accuracy)
            if sums.batches % SHOW_EVERY == 0:
                bar.set_postfix(loss=sums.text()["loss"])
    means = sums.means()
    return means["loss"], means["correct"]


def evaluate_accuracy(
    model: CNNClassifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 64
) -> float:
    """The fraction of images (N, 1, H, W) whose predicted class (logit > 0) equals the label."""
    model.eval()
    sums = RunningSums("correct")
    with no_grad():
        for start in range(0, len(labels), batch_size):
            x = to_device(images[start : start + batch_size])
            t = to_device(labels[start : start + batch_size])
            predicted = model(Tensor(x)).data > 0
            sums.add(len(t), correct=(predicted == (t == 1)).mean())
    model.train()
    return sums.means()["correct"]
