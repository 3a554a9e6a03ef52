"""Does this image look like the training data? And how far can the finding head's P be trusted?

Two statistics fitted once, when a model is trained, and stored in its checkpoint beside the
weights (minirad.models.report_checkpoint.save_review_statistics):

    familiarity = Familiarity.fit(blocks(train), blocks(val))   # train: fit, val: the threshold
    familiarity.score(np.concatenate(blocks(images), axis=1))    # (N,) distances
                                             # above familiarity.threshold: "unlike training"
    calibration = Calibration.fit(finding_logits(val), labels(val))
    calibration.probabilities(finding_logits)  # sigmoid(z_k / T_k), calibrated on val

Familiarity: a Mahalanobis distance (Lee et al., 2018, on a network's features), measured on
two blocks of features of each image: b = 1, the encoder's summary (M = 128 numbers, what the
finding head and the decoder read), and b = 2, six image statistics (`image_statistics`:
brightness, contrast, texture). With a block's training mean mu_b and standard deviations s_b,
and R_b the correlation matrix of its z_b = (x_b - mu_b) / s_b,

    d_b(x)^2 = z_b^T ((1 - lambda) R_b + lambda I)^-1 z_b / F_b          F_b features in block b
    d(x)     = sqrt( (d_1^2 + d_2^2) / 2 )                                the familiarity score

The shrinkage lambda keeps the inverse finite where features are collinear or constant (a ReLU
that never fires on a phantom); dividing by F_b gives d_b ~ 1 for a typical training image and
the two blocks equal weight. Why both: on pydicom's MR slices, blank images and intensity ramps
the summary alone lands among the phantoms' (the encoder was never shown anything else, so
nothing pushes those features apart), while the image statistics lie 3 to 10 times further out
than any phantom's; on their own the statistics would miss an image with a phantom's
histogram and none of its anatomy. The threshold is the `quantile` of d over held-out
(validation) phantoms: by construction about 1 - quantile of images like the training data are
flagged (the false-alarm rate), and an image further out than that is reported with the
verdict "needs review".

What it does not know: a familiar-looking image can still be read wrong, and an unfamiliar one
is flagged, not explained. The score measures distance from the phantoms, not correctness.

Calibration: temperature scaling (Guo et al., 2017), one temperature per finding: the head's
logit z_k is divided by T_k > 0, fitted by minimising the binary cross-entropy (the negative
log-likelihood) on validation studies. Dividing by T > 0 keeps the sign of z, so every
decision P >= 0.5 -- what the decoder reads -- stays as it was; only how sure the head says it
is changes (an over-confident head gets T > 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minirad.autograd import Tensor, no_grad, to_host
from minirad.backend import small_blas, to_device

SHRINKAGE = 0.1  # lambda: how far the correlation matrix is pulled towards the identity
QUANTILE = 0.99  # the threshold: 1% of held-out phantoms are flagged (the false-alarm rate)
MIN_SCALE = 1e-3  # a feature constant in training: deviations count in units of this


def image_statistics(images: np.ndarray) -> np.ndarray:
    """images (N, 1, S, S) in [0, 1] -> (N, 6): what a glance says about an image.

    mean and standard deviation of the pixels, their 5th and 95th percentiles, and the mean
    absolute difference between neighbouring pixels across and down (texture: noise is rough, a
    blank image or a ramp is smooth, a radiograph in between).
    """
    flat = images.reshape(len(images), -1).astype(np.float64)
    across = np.abs(np.diff(images, axis=3)).mean(axis=(1, 2, 3))
    down = np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3))
    low, high = np.percentile(flat, [5, 95], axis=1)
    return np.stack([flat.mean(axis=1), flat.std(axis=1), low, high, across, down], axis=1)


def encoder_outputs(model, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, ...]:
    """(summaries (N, M), finding logits (N, K)) of `model` for images (N, 1, S, S), on the host.

    Each batch crosses to the model's device once and its two results back once.
    """
    model.eval()
    summaries, logits = [], []
    with no_grad(), small_blas():
        for start in range(0, len(images), batch_size):
            batch = to_device(images[start : start + batch_size].astype(np.float32))
            encoded = model.encode(Tensor(batch))
            summaries.append(to_host(encoded.summary.data))
            logits.append(to_host(encoded.finding_logits.data))
    return np.concatenate(summaries).astype(np.float64), np.concatenate(logits).astype(np.float64)


def familiarity_blocks(summaries: np.ndarray, images: np.ndarray) -> list[np.ndarray]:
    """[summaries (N, M), image statistics (N, 6)]: the two blocks the distance is measured on."""
    return [summaries, image_statistics(images)]


@dataclass
class Familiarity:
    """The fitted distance. mean, scale (F,): the training features' means and standard
    deviations (floored), F = M + 6; precision (F, F): block-diagonal, block b holding
    ((1 - lambda) R_b + lambda I)^-1 / (2 F_b), so that d = sqrt(z^T precision z) (module doc);
    threshold: the distance above which an image is "unlike the training data";
    false_alarm_rate: the fraction of the held-out phantoms above it."""

    mean: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    threshold: float
    false_alarm_rate: float

    @staticmethod
    def fit(
        train: list[np.ndarray],
        held_out: list[np.ndarray],
        shrinkage: float = SHRINKAGE,
        quantile: float = QUANTILE,
    ) -> Familiarity:
        """Fit on the blocks `train` (each (N, F_b)); set the threshold on `held_out`'s."""
        if len(train[0]) < 2 or len(held_out[0]) < 1:
            raise ValueError(
                f"familiarity: needs >= 2 training and >= 1 held-out images, "
                f"got {len(train[0])} and {len(held_out[0])}"
            )
        x = np.concatenate(train, axis=1)
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), MIN_SCALE)
        z = (x - mean) / scale
        precision = np.zeros((len(mean), len(mean)))
        start = 0
        for block in train:
            F_b = block.shape[1]
            z_b = z[:, start : start + F_b]
            shrunk = (1 - shrinkage) * (z_b.T @ z_b / len(z_b)) + shrinkage * np.eye(F_b)
            inverse = np.linalg.inv(shrunk) / (len(train) * F_b)
            precision[start : start + F_b, start : start + F_b] = inverse
            start += F_b
        fitted = Familiarity(mean, scale, precision, np.inf, 0.0)
        distances = fitted.score(np.concatenate(held_out, axis=1))
        fitted.threshold = float(np.quantile(distances, quantile))
        fitted.false_alarm_rate = float(np.mean(distances > fitted.threshold))
        return fitted

    def score(self, features: np.ndarray) -> np.ndarray:
        """features (N, F), the blocks side by side -> d (N,), the distance of each image."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        squared = np.einsum("nf,fg,ng->n", z, self.precision, z)
        return np.sqrt(np.maximum(squared, 0.0))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, steps: int = 50) -> float:
    """T > 0 minimising mean BCE(sigmoid(z / T), t) over one finding's logits z, labels y.

    The targets t are Platt's (1999): t = (N+ + 1) / (N+ + 2) for the N+ positives and
    1 / (N- + 2) for the N- negatives, not 1 and 0. Without them a head that separates the
    validation studies perfectly (the bundled model's effusion logits: every positive above
    2.6, every negative below -8.1) has no best T: the loss falls as T -> 0, and the
    "calibrated" head would claim certainty that 600 studies cannot show.

    In a = 1 / T the loss L(a) = mean(softplus(a z) - t a z) is convex, so Newton's method on a
    converges from a = 1 (T = 1, the head as trained):
        L'(a) = mean((sigmoid(a z) - t) z),   L''(a) = mean(sigmoid(a z)(1 - sigmoid(a z)) z^2).
    a is kept >= 1e-3 (T <= 1000): a head no better than chance would want a <= 0.
    """
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    positives, negatives = y.sum(), (1 - y).sum()
    t = np.where(y > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    a = 1.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * z, -60, 60)))
        gradient, curvature = np.mean((p - t) * z), np.mean(p * (1 - p) * z * z)
        if curvature < 1e-12:
            break
        a_new = max(a - gradient / curvature, 1e-3)
        if abs(a_new - a) < 1e-9:
            break
        a = a_new
    return 1.0 / a


@dataclass
class Calibration:
    """temperatures (K,): one T_k per finding; probabilities = sigmoid(logits / T)."""

    temperatures: np.ndarray

    @staticmethod
    def fit(logits: np.ndarray, labels: np.ndarray) -> Calibration:
        """logits (N, K) of the finding head and labels (N, K) in {0, 1}, validation studies."""
        if logits.shape != labels.shape or logits.ndim != 2 or len(logits) == 0:
            raise ValueError(
                f"calibration: logits and labels must be (N >= 1, K), got {logits.shape} "
                f"and {labels.shape}"
            )
        return Calibration(
            np.array([fit_temperature(logits[:, k], labels[:, k]) for k in range(logits.shape[1])])
        )

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) or (K,) logits -> calibrated P = sigmoid(z / T), same shape."""
        scaled = np.asarray(logits, dtype=np.float64) / self.temperatures
        return 1.0 / (1.0 + np.exp(-np.clip(scaled, -60, 60)))


def fit_review_statistics(
    model, train_images: np.ndarray, val_images: np.ndarray, val_findings: np.ndarray
) -> tuple[Familiarity, Calibration]:
    """Both statistics for a trained model: the familiarity distance fitted on the training
    images (N, 1, S, S) and its threshold set on the validation images; the temperatures
    fitted on the validation images and their true findings (N_val, K) in {0, 1}."""
    train_summaries, _ = encoder_outputs(model, train_images)
    val_summaries, val_logits = encoder_outputs(model, val_images)
    familiarity = Familiarity.fit(
        familiarity_blocks(train_summaries, train_images),
        familiarity_blocks(val_summaries, val_images),
    )
    return familiarity, Calibration.fit(val_logits, val_findings)
