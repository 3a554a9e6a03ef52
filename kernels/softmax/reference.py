"""Softmax, log-softmax and fused softmax + cross-entropy (the softmax decoder), NumPy reference.

Softmax along an axis, shifted by the maximum so that exp never overflows (the shift cancels):
    m = max_j x_j,   softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
    log_softmax(x)_i = (x_i - m) - log sum_j exp(x_j - m)

Their backwards take the forward's output y (cheaper than recomputing it from x):
    softmax:      dx = y * (dy - sum_j dy_j y_j)       (the Jacobian diag(y) - y y^T times dy)
    log_softmax:  dx = dy - exp(y) * sum_j dy_j

Cross-entropy of logits (N, V) against integer targets (N,), averaged over the M rows whose
target is not ignore_index (padding in a batch of sentences):
    loss = -(1/M) sum_{n kept} log_softmax(logits[n])[targets[n]]
Its gradient is the reason to fuse the two: the Jacobian of softmax never has to be formed,
    dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) / M    for kept rows, 0 otherwise.
If M = 0 the loss is 0 with a zero gradient (PyTorch returns nan; a batch of padding should
not poison training).

Versions:
    vectorised  the only one: the max-shifted formulas above, vectorised over all rows.
"""

from __future__ import annotations

import numpy as np


def softmax_vectorised(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_vectorised(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_backward_vectorised(dy: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax_backward_vectorised(dy: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)


def softmax_cross_entropy_vectorised(logits: np.ndarray, targets: np.ndarray, ignore_index: int):
    N, V = logits.shape
    log_p = log_softmax_vectorised(logits, axis=1)
    kept = targets != ignore_index
    M = int(kept.sum())
    rows = np.arange(N)[kept]
    picked = targets[kept].astype(np.int64)
    dlogits = np.exp(log_p)
    dlogits[rows, picked] -= 1
    dlogits[~kept] = 0
    if M == 0:
        return np.zeros((), dtype=logits.dtype), dlogits
    loss = -log_p[rows, picked].sum() / M
    dlogits /= M
    return np.asarray(loss, dtype=logits.dtype), dlogits


VERSIONS = {
    "vectorised": {
        "softmax": softmax_vectorised,
        "softmax_backward": softmax_backward_vectorised,
        "log_softmax": log_softmax_vectorised,
        "log_softmax_backward": log_softmax_backward_vectorised,
        "softmax_cross_entropy": softmax_cross_entropy_vectorised,
    },
}
DEFAULT_VERSION = "vectorised"
