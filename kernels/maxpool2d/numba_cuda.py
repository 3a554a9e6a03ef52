"""2-D max-pooling in Numba CUDA.

Shapes:  x (N, C, H, W)   y, argmax, dy (N, C, P, Q)   kernel (kh, kw), stride (sh, sw),
         padding (ph, pw) with ph <= kh // 2, pw <= kw // 2 (padding counts as -infinity).

    y[n, c, p, q]      = max_{r < kh, s < kw} x[n, c, p*sh + r - ph, q*sw + s - pw]
    argmax[n, c, p, q] = h*W + w of that maximum (the first in window order on ties; NaN wins)
    dx[n, c, argmax[n, c, p, q]] += dy[n, c, p, q]

The forward is the same in every version: one thread per output element scans its window.
The versions differ in how the backward routes each dy to the input that won its window:

    atomic  one thread per OUTPUT element adds its dy into dx[argmax] with an atomic add. Simple
            (it is the formula above), but when windows overlap (stride < kernel) several threads
            may add to one pixel: the atomics serialise there, and since float addition is not
            associative and the order of the atomics is whatever the hardware makes it, dx can
            differ in its last bits from one run to the next. dx must also be zeroed first.
    gather  one thread per INPUT element (n, c, h, w) visits the few outputs whose window can
            contain (h, w) and sums the dy of those whose argmax is its own index. Every dx
            element is written once, by one thread, in a fixed order: no atomics, no zeroing, the
            same bits on every run. It reads ceil(kh/sh) * ceil(kw/sw) argmax entries per input
            (one, for the usual kernel = stride = 2).

DEFAULT_VERSION is "gather": it is deterministic, which is what reproducible training and exact
tests want, and it costs about what the atomic version costs.

Launch geometry (THREADS_1D threads per block) comes from kernels/runtime/numba_cuda.py.
"""

from __future__ import annotations

import math

from minirad.kernels._check import Pair, pool2d_output_size
from minirad.kernels.runtime.numba_cuda import cuda, grid_1d, xp

numba_cuda = cuda()


@numba_cuda.jit(cache=True)
def _forward_naive(x, y, argmax, kh, kw, sh, sw, ph, pw):
    index = numba_cuda.grid(1)  # one thread per output element, row-major over (N, C, P, Q)
    N, C, P, Q = y.shape
    if index >= N * C * P * Q:
        return
    q = index % Q
    p = index // Q % P
    c = index // (Q * P) % C
    n = index // (Q * P * C)
    H, W = x.shape[2], x.shape[3]
    best = x[n, c, 0, 0]  # a value of x's dtype; replaced by the window's first element below
    best_index = -1
    for r in range(kh):
        i = p * sh + r - ph
        if i < 0 or i >= H:
            continue  # padding row: -infinity never wins
        for s in range(kw):
            j = q * sw + s - pw
            if j < 0 or j >= W:
                continue
            value = x[n, c, i, j]
            # Strictly greater keeps the first maximum; NaN wins, as in PyTorch.
            if best_index < 0 or value > best or math.isnan(value):
                best = value
                best_index = i * W + j
    y[n, c, p, q] = best
    argmax[n, c, p, q] = best_index


@numba_cuda.jit(cache=True)
def _backward_atomic(dy, argmax, dx):
    """dx (N, C, H*W), zeroed by the caller."""
    index = numba_cuda.grid(1)  # one thread per OUTPUT element
    N, C, P, Q = dy.shape
    if index >= N * C * P * Q:
        return
    q = index % Q
    p = index // Q % P
    c = index // (Q * P) % C
    n = index // (Q * P * C)
    # Overlapping windows can share a winner: the add must be atomic.
    numba_cuda.atomic.add(dx, (n, c, argmax[n, c, p, q]), dy[n, c, p, q])


@numba_cuda.jit(device=True)
def _first_window(i, pad, k, stride):
    """The first output o whose window contains input index i.

    Window o covers inputs o*stride - pad ... o*stride - pad + k - 1, so it contains i when
    (i + pad - k + 1) / stride <= o <= (i + pad) / stride: o_first is that ceiling (or 0).
    """
    lowest = i + pad - k + 1
    if lowest <= 0:
        return 0
    return (lowest + stride - 1) // stride


@numba_cuda.jit(device=True)
def _last_window(i, pad, stride, n_outputs):
    """The last output o whose window contains input index i: o <= (i + pad) / stride, o < n."""
    # An if, not the builtin min: Numba 0.68's CUDA target cannot compile min's varargs overload.
    last = (i + pad) // stride
    if last > n_outputs - 1:
        return n_outputs - 1
    return last


@numba_cuda.jit(cache=True)
def _backward_gather(dy, argmax, dx, kh, kw, sh, sw, ph, pw):
    index = numba_cuda.grid(1)  # one thread per INPUT element, row-major over (N, C, H, W)
    N, C, H, W = dx.shape
    if index >= N * C * H * W:
        return
    j = index % W
    i = index // W % H
    c = index // (W * H) % C
    n = index // (W * H * C)
    P, Q = dy.shape[2], dy.shape[3]
    # Only these outputs' windows contain (i, j); with stride > kernel the range can be empty.
    p_first, p_last = _first_window(i, ph, kh, sh), _last_window(i, ph, sh, P)
    q_first, q_last = _first_window(j, pw, kw, sw), _last_window(j, pw, sw, Q)
    total = dy.dtype.type(0)  # a zero of dy's dtype: no float64 on a float32 GPU path
    for p in range(p_first, p_last + 1):
        for q in range(q_first, q_last + 1):
            if argmax[n, c, p, q] == i * W + j:
                total += dy[n, c, p, q]
    dx[n, c, i, j] = total


def maxpool2d_forward(x, kernel: Pair, stride: Pair, padding: Pair):
    x = xp().ascontiguousarray(x)
    N, C, H, W = x.shape
    P, Q = pool2d_output_size(H, W, kernel[0], kernel[1], stride, padding)
    y = xp().empty((N, C, P, Q), dtype=x.dtype)
    argmax = xp().empty((N, C, P, Q), dtype=xp().int64)
    blocks, threads = grid_1d(y.size)
    _forward_naive[blocks, threads](x, y, argmax, *kernel, *stride, *padding)
    return y, argmax


def maxpool2d_backward_atomic(dy, argmax, x_shape, kernel: Pair, stride: Pair, padding: Pair):
    N, C, H, W = x_shape
    dx = xp().zeros((N, C, H * W), dtype=dy.dtype)  # the atomics add into it
    blocks, threads = grid_1d(dy.size)
    _backward_atomic[blocks, threads](
        xp().ascontiguousarray(dy), xp().ascontiguousarray(argmax, dtype=xp().int64), dx
    )
    return dx.reshape(x_shape)


def maxpool2d_backward_gather(dy, argmax, x_shape, kernel: Pair, stride: Pair, padding: Pair):
    dx = xp().empty(x_shape, dtype=dy.dtype)  # every element is written exactly once
    blocks, threads = grid_1d(dx.size)
    _backward_gather[blocks, threads](
        xp().ascontiguousarray(dy),
        xp().ascontiguousarray(argmax, dtype=xp().int64),
        dx,
        *kernel,
        *stride,
        *padding,
    )
    return dx


VERSIONS = {
    "atomic": {
        "maxpool2d_forward": maxpool2d_forward,
        "maxpool2d_backward": maxpool2d_backward_atomic,
    },
    "gather": {
        "maxpool2d_forward": maxpool2d_forward,
        "maxpool2d_backward": maxpool2d_backward_gather,
    },
}
DEFAULT_VERSION = "gather"
