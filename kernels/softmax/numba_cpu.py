"""Softmax, log-softmax and fused softmax + cross-entropy, Numba CPU backend.

Shapes:  x, y, dy, dx of any shape, normalised along `axis` (moved last by rows.py, so every
         kernel sees rows (R, L));  logits, dlogits (N, V);  targets (N,) integers.

    m = max_j x_j,   softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
    softmax backward:      dx = y * (dy - sum_j dy_j y_j)
    log_softmax backward:  dx = dy - exp(y) * sum_j dy_j
    cross-entropy:  loss = mean over kept rows of (log sum_j exp(x_j) - x_target),
                    dlogits = (softmax(x) - onehot(target)) / M on kept rows, 0 on ignored rows

Versions:
    naive     the formulas row by row, one thread, each quantity in its own loop (exp computed
              twice per element in softmax: once for the sum, once for the output).
    parallel  the default: the same row loops with the rows spread over the cores (`prange`; on
              fewer than PARALLEL_FROM elements the naive kernels, on one thread), and
              exp computed once per element: a max pass, one pass that stores exp(x - m) in the
              output and sums it, and a scaling pass. The cross-entropy kernel computes the loss and
              the gradient in that same walk, so the probabilities are never stored separately and
              the softmax Jacobian is never formed. Sums and scales stay in the input's dtype (a
              float literal such as 0.0 would promote float32 arithmetic to float64). Scalar exp
              dominates the cost here (Numba has no vector math library on this machine), so halving
              the exps matters more than the passes; an "online" one-pass softmax (running max and
              rescaled sum) would need two exps per element and is slower on a CPU, whatever it
              saves on a GPU.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minirad.kernels.softmax.rows import as_rows, from_rows

# ----------------------------------------------------------------------------------------------
# naive
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _softmax_rows_naive(x, out, log):
    for r in range(x.shape[0]):
        m = -np.inf
        for j in range(x.shape[1]):
            m = max(m, x[r, j])
        total = 0.0
        for j in range(x.shape[1]):
            total += np.exp(x[r, j] - m)
        for j in range(x.shape[1]):
            if log:
                out[r, j] = x[r, j] - m - np.log(total)
            else:
                out[r, j] = np.exp(x[r, j] - m) / total


@njit(cache=True)
def _softmax_backward_rows_naive(dy, y, out, log):
    for r in range(y.shape[0]):
        total = 0.0
        for j in range(y.shape[1]):
            total += dy[r, j] if log else dy[r, j] * y[r, j]
        for j in range(y.shape[1]):
            if log:
                out[r, j] = dy[r, j] - np.exp(y[r, j]) * total
            else:
                out[r, j] = y[r, j] * (dy[r, j] - total)


@njit(cache=True)
def _cross_entropy_naive(logits, targets, ignore_index, dlogits, row_loss):
    N, V = logits.shape
    kept = 0
    for n in range(N):
        if targets[n] != ignore_index:
            kept += 1
    for n in range(N):
        for j in range(V):
            dlogits[n, j] = 0.0
        row_loss[n] = 0.0
        if targets[n] == ignore_index:
            continue
        m = -np.inf
        for j in range(V):
            m = max(m, logits[n, j])
        total = 0.0
        for j in range(V):
            total += np.exp(logits[n, j] - m)
        row_loss[n] = m + np.log(total) - logits[n, targets[n]]
        for j in range(V):
            dlogits[n, j] = np.exp(logits[n, j] - m) / total / kept
        dlogits[n, targets[n]] -= 1.0 / kept
    return kept


# ----------------------------------------------------------------------------------------------
# parallel: rows over the cores, exp once per element
# ----------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _row_max(row):
    m = row[0]
    for j in range(1, row.shape[0]):
        m = max(m, row[j])
    return m


@njit(cache=True, inline="always")
def _exp_shifted_into(row, m, out_row):
    """out_row = exp(row - m); returns its sum (accumulated in row's dtype)."""
    total = row.dtype.type(0)
    for j in range(row.shape[0]):
        e = np.exp(row[j] - m)
        out_row[j] = e
        total += e
    return total


@njit(cache=True, parallel=True)
def _softmax_rows_parallel(x, out, log):
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for r in prange(x.shape[0]):
        m = _row_max(x[r])
        if log:
            total = zero
            for j in range(x.shape[1]):
                total += np.exp(x[r, j] - m)
            shift = m + np.log(total)
            for j in range(x.shape[1]):
                out[r, j] = x[r, j] - shift
        else:
            scale = one / _exp_shifted_into(x[r], m, out[r])
            for j in range(x.shape[1]):
                out[r, j] *= scale


@njit(cache=True, parallel=True)
def _softmax_backward_rows_parallel(dy, y, out, log):
    zero = y.dtype.type(0)
    for r in prange(y.shape[0]):
        total = zero
        for j in range(y.shape[1]):
            total += dy[r, j] if log else dy[r, j] * y[r, j]
        for j in range(y.shape[1]):
            if log:
                out[r, j] = dy[r, j] - np.exp(y[r, j]) * total
            else:
                out[r, j] = y[r, j] * (dy[r, j] - total)


@njit(cache=True, parallel=True)
def _cross_entropy_parallel(logits, targets, ignore_index, dlogits, row_loss):
    N, V = logits.shape
    kept = 0
    for n in range(N):
        if targets[n] != ignore_index:
            kept += 1
    one, M = logits.dtype.type(1), logits.dtype.type(kept)  # an int M would promote to float64
    for n in prange(N):
        if targets[n] == ignore_index or kept == 0:
            dlogits[n, :] = 0.0
            row_loss[n] = 0.0
            continue
        m = _row_max(logits[n])
        total = _exp_shifted_into(logits[n], m, dlogits[n])  # dlogits[n] = exp(x - m)
        row_loss[n] = m + np.log(total) - logits[n, targets[n]]
        scale = one / (total * M)
        for j in range(V):
            dlogits[n, j] *= scale  # softmax / M
        dlogits[n, targets[n]] -= one / M
    return kept


# ----------------------------------------------------------------------------------------------
# Python-level entry points (shared by both versions: only the row kernels differ)
# ----------------------------------------------------------------------------------------------


def _softmax(rows_kernel, x, axis, log):
    rows = as_rows(np, x, axis)
    out = np.empty_like(rows)
    rows_kernel(rows, out, log)
    return from_rows(np, out, x, axis)


def _softmax_backward(rows_kernel, dy, y, axis, log):
    y_rows = as_rows(np, y, axis)
    out = np.empty_like(y_rows)
    rows_kernel(as_rows(np, dy, axis), y_rows, out, log)
    return from_rows(np, out, y, axis)


def _cross_entropy(kernel, logits, targets, ignore_index):
    logits = np.ascontiguousarray(logits)
    dlogits = np.empty_like(logits)
    row_loss = np.empty(logits.shape[0], dtype=np.float64)
    kept = kernel(
        logits, np.ascontiguousarray(targets, dtype=np.int64), ignore_index, dlogits, row_loss
    )
    loss = row_loss.sum() / kept if kept else 0.0
    return np.asarray(loss, dtype=logits.dtype), dlogits


# Below this many elements the parallel version runs the naive (serial) kernels: waking the
# thread pool costs more than the work. Measured on the 2-core machine, float32 log_softmax:
# (1, 205) 47 us parallel against 2 us serial, (32, 205) 79 against 48, (32, 1024) 144 against
# 236, (480, 1000) 1,123 against 2,469: the crossing lies between 6,560 and 32,768 elements.
# A greedy decoding step's (B, 205) log-softmax is the call this is for.
PARALLEL_FROM = 16_384


def _by_size(parallel_kernel, serial_kernel):
    """A row kernel that runs `serial_kernel` on fewer than PARALLEL_FROM elements (its first
    argument's size) and `parallel_kernel` on more."""

    def kernel(x, *args):
        if x.size < PARALLEL_FROM:
            return serial_kernel(x, *args)
        return parallel_kernel(x, *args)

    return kernel


def _version(rows, backward_rows, cross_entropy):
    return {
        "softmax": lambda x, axis: _softmax(rows, x, axis, False),
        "softmax_backward": lambda dy, y, axis: _softmax_backward(
            backward_rows, dy, y, axis, False
        ),
        "log_softmax": lambda x, axis: _softmax(rows, x, axis, True),
        "log_softmax_backward": lambda dy, y, axis: _softmax_backward(
            backward_rows, dy, y, axis, True
        ),
        "softmax_cross_entropy": lambda logits, targets, ignore_index: _cross_entropy(
            cross_entropy, logits, targets, ignore_index
        ),
    }


VERSIONS = {
    "naive": _version(_softmax_rows_naive, _softmax_backward_rows_naive, _cross_entropy_naive),
    "parallel": _version(
        _by_size(_softmax_rows_parallel, _softmax_rows_naive),
        _by_size(_softmax_backward_rows_parallel, _softmax_backward_rows_naive),
        _by_size(_cross_entropy_parallel, _cross_entropy_naive),
    ),
}
DEFAULT_VERSION = "parallel"
