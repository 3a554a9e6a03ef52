"""2-D max-pooling, Numba CPU backend.

Shapes:  x (N, C, H, W)   y, argmax (N, C, P, Q)   kernel (kh, kw), stride (sh, sw),
         padding (ph, pw) with ph <= kh // 2, pw <= kw // 2 (padding counts as -infinity).

    y[n, c, p, q]      = max_{r < kh, s < kw} x[n, c, p*sh + r - ph, q*sw + s - pw]
    argmax[n, c, p, q] = h*W + w of that maximum (the first in window order on ties)
    dx[n, c, argmax[n, c, p, q]] += dy[n, c, p, q]

Versions:
    naive     the formula as loops, one thread: for every output, scan its window.
    parallel  the same scan, with the (n, c) planes spread over the cores by `prange`. Planes are
              independent in both directions (an argmax never leaves its plane), so the backward's
              scatter-add needs no atomics: each thread owns whole planes of dx. Pooling does
              ~1 comparison per input byte loaded, so it is bound by memory, not arithmetic; the
              gain over `naive` is the second core, not cleverness.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minirad.kernels._check import Pair, pool2d_output_size


@njit(cache=True, inline="always")
def _pool_plane(x, y, argmax, kh, kw, sh, sw, ph, pw):
    """Max over every window of one (H, W) plane; writes y and argmax of shape (P, Q)."""
    H, W = x.shape
    P, Q = y.shape
    for p in range(P):
        for q in range(Q):
            best = -np.inf
            best_index = -1
            for r in range(kh):
                i = p * sh + r - ph
                if i < 0 or i >= H:
                    continue
                for s in range(kw):
                    j = q * sw + s - pw
                    if j < 0 or j >= W:
                        continue
                    value = x[i, j]
                    # Strictly greater keeps the first maximum; NaN wins, as in PyTorch.
                    if best_index < 0 or value > best or np.isnan(value):
                        best = value
                        best_index = i * W + j
            y[p, q] = best
            argmax[p, q] = best_index


@njit(cache=True, inline="always")
def _take(value, best):
    """Whether `value` replaces `best` in the scan: strictly greater (the first maximum stays),
    or NaN (NaN wins, as in PyTorch). As one boolean expression, not an if, so that LLVM can
    compile the scan to vector selects."""
    return (value > best) | (value != value)


@njit(cache=True, inline="always")
def _pool_plane_2x2(x, y, argmax):
    """_pool_plane for the common case, kernel 2 x 2, stride 2, no padding, without a branch.

    The general scan tests every window position against the plane's edges and branches on
    each comparison, one output at a time: ~18 ns an output. Here every window is inside the
    plane, the four values are read from two rows, and each comparison is a select, so the
    loop over q vectorises: several times faster, and the same values and indices.
    """
    W = x.shape[1]
    P, Q = y.shape
    for p in range(P):
        top, bottom = x[2 * p], x[2 * p + 1]
        y_row, argmax_row = y[p], argmax[p]
        first = 2 * p * W  # flat index of the window's top-left value at q = 0
        for q in range(Q):
            # Window order: top-left, top-right, bottom-left, bottom-right.
            best, offset = top[2 * q], 0
            value = top[2 * q + 1]
            take = _take(value, best)
            best, offset = (value, 1) if take else (best, offset)
            value = bottom[2 * q]
            take = _take(value, best)
            best, offset = (value, W) if take else (best, offset)
            value = bottom[2 * q + 1]
            take = _take(value, best)
            best, offset = (value, W + 1) if take else (best, offset)
            y_row[q] = best
            argmax_row[q] = first + 2 * q + offset


@njit(cache=True, inline="always")
def _unpool_plane(dy, argmax, dx):
    """dx (H*W,) += dy routed to argmax, for one plane."""
    P, Q = dy.shape
    for p in range(P):
        for q in range(Q):
            dx[argmax[p, q]] += dy[p, q]


@njit(cache=True)
def _forward_naive(x, y, argmax, kh, kw, sh, sw, ph, pw):
    N, C = x.shape[:2]
    for n in range(N):
        for c in range(C):
            _pool_plane(x[n, c], y[n, c], argmax[n, c], kh, kw, sh, sw, ph, pw)


@njit(cache=True, parallel=True)
def _forward_parallel(x, y, argmax, kh, kw, sh, sw, ph, pw):
    N, C = x.shape[:2]
    two_by_two = kh == kw == sh == sw == 2 and ph == pw == 0
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        if two_by_two:
            _pool_plane_2x2(x[n, c], y[n, c], argmax[n, c])
        else:
            _pool_plane(x[n, c], y[n, c], argmax[n, c], kh, kw, sh, sw, ph, pw)


@njit(cache=True)
def _backward_naive(dy, argmax, dx):
    N, C = dy.shape[:2]
    for n in range(N):
        for c in range(C):
            _unpool_plane(dy[n, c], argmax[n, c], dx[n, c])


@njit(cache=True, parallel=True)
def _backward_parallel(dy, argmax, dx):
    N, C = dy.shape[:2]
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        _unpool_plane(dy[n, c], argmax[n, c], dx[n, c])


def _make_forward(kernel_fn):
    def maxpool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair):
        x = np.ascontiguousarray(x)
        N, C, H, W = x.shape
        P, Q = pool2d_output_size(H, W, kernel[0], kernel[1], stride, padding)
        y = np.empty((N, C, P, Q), dtype=x.dtype)
        argmax = np.empty((N, C, P, Q), dtype=np.int64)
        kernel_fn(x, y, argmax, *kernel, *stride, *padding)
        return y, argmax

    return maxpool2d_forward


def _make_backward(kernel_fn):
    def maxpool2d_backward(dy, argmax, x_shape, kernel: Pair, stride: Pair, padding: Pair):
        N, C, H, W = x_shape
        dx = np.zeros((N, C, H * W), dtype=dy.dtype)
        kernel_fn(np.ascontiguousarray(dy), np.ascontiguousarray(argmax, dtype=np.int64), dx)
        return dx.reshape(x_shape)

    return maxpool2d_backward


VERSIONS = {
    "naive": {
        "maxpool2d_forward": _make_forward(_forward_naive),
        "maxpool2d_backward": _make_backward(_backward_naive),
    },
    "parallel": {
        "maxpool2d_forward": _make_forward(_forward_parallel),
        "maxpool2d_backward": _make_backward(_backward_parallel),
    },
}
DEFAULT_VERSION = "parallel"
