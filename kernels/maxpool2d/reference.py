"""2-D max-pooling, NumPy reference.

Shapes:  x (N, C, H, W)   y, argmax (N, C, P, Q)   kernel (kh, kw), stride (sh, sw),
         padding (ph, pw) with ph <= kh // 2 and pw <= kw // 2 (padding counts as -infinity).
         P = (H + 2ph - kh) // sh + 1,   Q = (W + 2pw - kw) // sw + 1.

Forward:
    y[n, c, p, q]      = max_{r < kh, s < kw} x[n, c, p*sh + r - ph, q*sw + s - pw]
    argmax[n, c, p, q] = h*W + w, the flat index into the (H, W) plane of that maximum
                         (the first one in row-major window order on ties; PyTorch's
                         convention, so its `return_indices` output compares directly).

Backward: the maximum is the only input that moved the output, so the whole gradient goes there
    dx[n, c, argmax[n, c, p, q] // W, argmax[n, c, p, q] % W] += dy[n, c, p, q]
(`+=`: with stride < kernel one pixel can be the maximum of several windows.)

Versions:
    vectorised  the only one: loop over the kh*kw offsets of the window, and for each offset
                compare a whole (N, C, P, Q) grid at once against the running maximum.
"""

from __future__ import annotations

import numpy as np

from minirad.kernels._check import Pair, pool2d_output_size


def maxpool2d_forward_vectorised(x, kernel: Pair, stride: Pair, padding: Pair):
    N, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    P, Q = pool2d_output_size(H, W, kh, kw, stride, padding)
    best = np.full((N, C, P, Q), -np.inf, dtype=x.dtype)
    argmax = np.full((N, C, P, Q), -1, dtype=np.int64)
    for r in range(kh):
        i = np.arange(P) * sh + r - ph  # input row that offset r of each window reads
        for s in range(kw):
            j = np.arange(Q) * sw + s - pw
            inside = (i[:, None] >= 0) & (i[:, None] < H) & (j >= 0) & (j < W)  # (P, Q)
            values = x[:, :, i.clip(0, H - 1)[:, None], j.clip(0, W - 1)]  # (N, C, P, Q)
            # Strictly greater keeps the first maximum; NaN propagates as in PyTorch;
            # argmax < 0 takes the first real element even if it is -inf.
            take = inside & ((values > best) | (argmax < 0) | np.isnan(values))
            best = np.where(take, values, best)
            argmax = np.where(take, i[:, None] * W + j, argmax)
    return best, argmax


def maxpool2d_backward_vectorised(dy, argmax, x_shape, kernel: Pair, stride: Pair, padding: Pair):
    N, C, H, W = x_shape
    P, Q = dy.shape[2:]
    dx = np.zeros((N * C, H * W), dtype=dy.dtype)
    planes = np.arange(N * C)[:, None]
    # np.add.at accumulates repeated indices (a plain fancy-index += would drop all but one).
    # The sizes are explicit: an empty batch has no -1 for reshape to infer.
    np.add.at(dx, (planes, argmax.reshape(N * C, P * Q)), dy.reshape(N * C, P * Q))
    return dx.reshape(x_shape)


VERSIONS = {
    "vectorised": {
        "maxpool2d_forward": maxpool2d_forward_vectorised,
        "maxpool2d_backward": maxpool2d_backward_vectorised,
    },
}
DEFAULT_VERSION = "vectorised"
