"""2-D convolution (cross-correlation, as in every deep-learning library), NumPy reference.

Shapes:  x (N, C, H, W)   w (K, C, R, S)   b (K,) or None   y (N, K, P, Q)
         stride (sh, sw), padding (ph, pw); x_pad is x with ph zero rows and pw zero columns
         added on each side;  P = (H + 2ph - R) // sh + 1,  Q = (W + 2pw - S) // sw + 1.

Forward:
    y[n, k, p, q] = b[k] + sum_{c, r, s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]

Backward, given dy = dL/dy of shape (N, K, P, Q):
    db[k]          = sum_{n, p, q} dy[n, k, p, q]
    dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x_pad[n, c, p*sh + r, q*sw + s]
    dx_pad[n, c, p*sh + r, q*sw + s] += dy[n, k, p, q] * w[k, c, r, s]   (for every k, p, q, r, s)
    dx = dx_pad without its padding border

Versions:
    naive   the formula as written: one loop per output element, a window sum inside. For
            reading and for tiny inputs only (seconds for a 16x16 image).
    im2col  the default. Copy every receptive field into a column of a matrix ("image to
            columns"), then the whole convolution is one matrix product per image:
                cols (N, C*R*S, P*Q),  y = w.reshape(K, C*R*S) @ cols.
            The backward is two more products and the inverse copy, col2im, which adds each
            column back onto the input positions it came from. This turns the convolution
            into the GEMM that BLAS runs near the machine's peak; the price is the memory of
            `cols`, R*S times the input.
"""

from __future__ import annotations

import numpy as np

from minirad.kernels._check import Pair, conv2d_output_size


def _pad(x: np.ndarray, padding: Pair) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _unpad(x_pad: np.ndarray, padding: Pair) -> np.ndarray:
    ph, pw = padding
    H, W = x_pad.shape[2] - 2 * ph, x_pad.shape[3] - 2 * pw
    return x_pad[:, :, ph : ph + H, pw : pw + W]


# ----------------------------------------------------------------------------------------------
# Version "naive": the formula, one output element at a time
# ----------------------------------------------------------------------------------------------


def conv2d_forward_naive(x, w, b, stride: Pair, padding: Pair) -> np.ndarray:
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    sh, sw = stride
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    x_pad = _pad(x, padding)
    y = np.zeros((N, K, P, Q), dtype=x.dtype)
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    window = x_pad[n, :, p * sh : p * sh + R, q * sw : q * sw + S]  # (C, R, S)
                    y[n, k, p, q] = np.sum(window * w[k])
            if b is not None:
                y[n, k] += b[k]
    return y


def conv2d_backward_naive(dy, x, w, stride: Pair, padding: Pair):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    sh, sw = stride
    _, _, P, Q = dy.shape
    x_pad = _pad(x, padding)
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    rows = slice(p * sh, p * sh + R)
                    cols = slice(q * sw, q * sw + S)
                    dw[k] += dy[n, k, p, q] * x_pad[n, :, rows, cols]
                    dx_pad[n, :, rows, cols] += dy[n, k, p, q] * w[k]
    db = dy.sum(axis=(0, 2, 3))
    return _unpad(dx_pad, padding).copy(), dw, db


# ----------------------------------------------------------------------------------------------
# Version "im2col": receptive fields as matrix columns, then matrix products
# ----------------------------------------------------------------------------------------------


def im2col(x_pad: np.ndarray, R: int, S: int, stride: Pair, P: int, Q: int) -> np.ndarray:
    """x_pad (N, C, Hp, Wp) -> cols (N, C*R*S, P*Q); column p*Q+q is the field of output (p, q).

    One strided copy per kernel offset (r, s): the (P, Q) grid of pixels that offset touches.
    """
    N, C = x_pad.shape[:2]
    sh, sw = stride
    cols = np.empty((N, C, R, S, P, Q), dtype=x_pad.dtype)
    for r in range(R):
        for s in range(S):
            cols[:, :, r, s] = x_pad[:, :, r : r + sh * P : sh, s : s + sw * Q : sw]
    return cols.reshape(N, C * R * S, P * Q)


def col2im(cols: np.ndarray, x_pad_shape, R: int, S: int, stride: Pair, P: int, Q: int):
    """The adjoint of im2col: add each column entry back onto the pixel it was copied from.

    cols (N, C*R*S, P*Q) -> (N, C, Hp, Wp). Overlapping fields (stride < kernel) accumulate.
    """
    N, C = x_pad_shape[:2]
    sh, sw = stride
    cols = cols.reshape(N, C, R, S, P, Q)
    x_pad = np.zeros(x_pad_shape, dtype=cols.dtype)
    for r in range(R):
        for s in range(S):
            x_pad[:, :, r : r + sh * P : sh, s : s + sw * Q : sw] += cols[:, :, r, s]
    return x_pad


def conv2d_forward_im2col(x, w, b, stride: Pair, padding: Pair) -> np.ndarray:
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    cols = im2col(_pad(x, padding), R, S, stride, P, Q)  # (N, CRS, PQ)
    y = np.matmul(w.reshape(K, C * R * S), cols)  # (K, CRS) @ (N, CRS, PQ) -> (N, K, PQ)
    if b is not None:
        y += b[:, None]
    return y.reshape(N, K, P, Q)


def conv2d_backward_im2col(dy, x, w, stride: Pair, padding: Pair):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    _, _, P, Q = dy.shape
    x_pad = _pad(x, padding)
    cols = im2col(x_pad, R, S, stride, P, Q)  # (N, CRS, PQ)
    dy3 = dy.reshape(N, K, P * Q)
    # dw: contract dy and cols over the batch and the output positions.
    dw = np.tensordot(dy3, cols, axes=([0, 2], [0, 2])).reshape(w.shape)  # (K, CRS)
    # dcols[n] = w2.T @ dy[n]; then scatter the columns back onto the padded input.
    dcols = np.matmul(w.reshape(K, C * R * S).T, dy3)  # (N, CRS, PQ)
    dx_pad = col2im(dcols, x_pad.shape, R, S, stride, P, Q)
    db = dy.sum(axis=(0, 2, 3))
    return _unpad(dx_pad, padding).copy(), dw, db


VERSIONS = {
    "naive": {"conv2d_forward": conv2d_forward_naive, "conv2d_backward": conv2d_backward_naive},
    "im2col": {"conv2d_forward": conv2d_forward_im2col, "conv2d_backward": conv2d_backward_im2col},
}
DEFAULT_VERSION = "im2col"
