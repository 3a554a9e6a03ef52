"""Linear layer (matmul + bias), Numba CPU backend.

Shapes:  x (N, in)   w (out, in)   b (out,) or None   y, dy (N, out)

    y  = x @ w.T + b        dx = dy @ w        dw = dy.T @ x        db = sum_n dy[n]

Versions:
    naive    the three loops of the definition, compiled. Each y[n, o] is a dot product of a
             row of x with a row of w: both rows are contiguous, so the inner loop streams memory.
    blocked  the same dot products, cache-blocked and spread over the cores: each thread takes
             a block of rows of x and walks the rows of w in blocks that stay in L1/L2 while
             they are reused for every row of its x block. This is the first step of every fast
             GEMM (the next ones, register blocking and packed panels, are what BLAS adds).
    blas     the default: the products by the machine's BLAS (NumPy's matmul) — a decade of
             hand-tuned assembly that no readable kernel matches at these sizes — and only the
             bias add and the bias gradient as compiled loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Rows of x per thread task and rows of w per cache block in the `blocked` version: a block of
# 64 rows of w at in <= 512 float32 is <= 128 KB, about an L2 cache.
ROW_BLOCK = 16
COL_BLOCK = 64


# ----------------------------------------------------------------------------------------------
# naive: the definition as loops
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _matmul_nt_naive(a, b, out):
    """out[i, j] = sum_k a[i, k] * b[j, k]   (a times b transposed)."""
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            total = 0.0
            for k in range(a.shape[1]):
                total += a[i, k] * b[j, k]
            out[i, j] = total


def _forward_with(matmul_nt, x, w, b):
    """y = x @ w.T (+ b) with one of the compiled matmul kernels (a times b transposed)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    matmul_nt(x, w, y)
    if b is not None:
        _add_bias(y, np.ascontiguousarray(b))
    return y


def _backward_with(matmul_nt, dy, x, w):
    """dx = dy @ w = dy @ (w.T).T and dw = dy.T @ x = dy.T @ (x.T).T with the same kernel."""
    dy, x, w = (np.ascontiguousarray(a) for a in (dy, x, w))
    dx = np.empty_like(x)
    matmul_nt(dy, np.ascontiguousarray(w.T), dx)
    dw = np.empty_like(w)
    matmul_nt(np.ascontiguousarray(dy.T), np.ascontiguousarray(x.T), dw)
    return dx, dw, _column_sums(dy)


def linear_forward_naive(x, w, b):
    return _forward_with(_matmul_nt_naive, x, w, b)


def linear_backward_naive(dy, x, w):
    return _backward_with(_matmul_nt_naive, dy, x, w)


# ----------------------------------------------------------------------------------------------
# blocked: cache blocks, parallel over row blocks of the output
# ----------------------------------------------------------------------------------------------


@njit(cache=True, parallel=True, fastmath=True)
def _matmul_nt_blocked(a, b, out):
    """out = a @ b.T, a (M, K), b (J, K): blocks of ROW_BLOCK rows of a per task."""
    M, K = a.shape
    J = b.shape[0]
    n_blocks = (M + ROW_BLOCK - 1) // ROW_BLOCK
    zero = np.zeros(1, a.dtype)[0]  # accumulate in the inputs' dtype, so float32 vectorises
    for block in prange(n_blocks):
        i0, i1 = block * ROW_BLOCK, min((block + 1) * ROW_BLOCK, M)
        for j0 in range(0, J, COL_BLOCK):  # this block of b stays in cache for all i
            j1 = min(j0 + COL_BLOCK, J)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    total = zero
                    for k in range(K):  # contiguous in both: LLVM vectorises this loop
                        total += a[i, k] * b[j, k]
                    out[i, j] = total


def linear_forward_blocked(x, w, b):
    return _forward_with(_matmul_nt_blocked, x, w, b)


def linear_backward_blocked(dy, x, w):
    return _backward_with(_matmul_nt_blocked, dy, x, w)


# ----------------------------------------------------------------------------------------------
# blas: BLAS for the products, compiled loops for the rest
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _add_bias(y, b):
    for n in range(y.shape[0]):
        for o in range(y.shape[1]):
            y[n, o] += b[o]


@njit(cache=True)
def _column_sums(dy):
    """db[o] = sum_n dy[n, o], accumulated row by row (contiguous reads)."""
    db = np.zeros(dy.shape[1], dtype=dy.dtype)
    for n in range(dy.shape[0]):
        for o in range(dy.shape[1]):
            db[o] += dy[n, o]
    return db


def linear_forward_blas(x, w, b):
    y = np.ascontiguousarray(x @ w.T)
    if b is not None:
        _add_bias(y, np.ascontiguousarray(b))
    return y


def linear_backward_blas(dy, x, w):
    return dy @ w, dy.T @ x, _column_sums(np.ascontiguousarray(dy))


VERSIONS = {
    "naive": {"linear_forward": linear_forward_naive, "linear_backward": linear_backward_naive},
    "blocked": {
        "linear_forward": linear_forward_blocked,
        "linear_backward": linear_backward_blocked,
    },
    "blas": {"linear_forward": linear_forward_blas, "linear_backward": linear_backward_blas},
}
DEFAULT_VERSION = "blas"
