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
    for plane in prange(N * C):
        n, c = plane // C, plane % C
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
