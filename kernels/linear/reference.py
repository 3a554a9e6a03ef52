"""Linear layer (matmul + bias), NumPy reference: the GEMM the cells and the decoder use.

Shapes:  x (N, in)   w (out, in)   b (out,) or None   y, dy (N, out)

Forward:   y  = x @ w.T + b          y[n, o] = b[o] + sum_i x[n, i] * w[o, i]
Backward:  dx = dy @ w               dx[n, i] = sum_o dy[n, o] * w[o, i]
           dw = dy.T @ x             dw[o, i] = sum_n dy[n, o] * x[n, i]
           db = sum_n dy[n, :]

Versions:
    blas  the only one: NumPy's matmul, which calls the machine's BLAS.
"""

from __future__ import annotations

import numpy as np


def linear_forward_blas(x, w, b) -> np.ndarray:
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward_blas(dy, x, w):
    return dy @ w, dy.T @ x, dy.sum(axis=0)


VERSIONS = {
    "blas": {"linear_forward": linear_forward_blas, "linear_backward": linear_backward_blas},
}
DEFAULT_VERSION = "blas"
