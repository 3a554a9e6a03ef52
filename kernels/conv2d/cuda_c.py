"""2-D convolution in CUDA C (conv2d.cu): host code shared by the `cupy` and `cuda_c_cpu` backends.

Shapes:  x (N, C, H, W)   w (K, C, R, S)   b (K,) or None   y and dy (N, K, P, Q)
         stride (sh, sw), padding (ph, pw); x_pad is x with ph zero rows and pw zero columns
         added on each side;  P = (H + 2ph - R) // sh + 1,  Q = (W + 2pw - S) // sw + 1.

Forward:
    y[n, k, p, q] = b[k] + sum_{c, r, s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]
Backward, given dy = dL/dy:
    db[k]          = sum_{n, p, q} dy[n, k, p, q]
    dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x_pad[n, c, p*sh + r, q*sw + s]
    dx[n, c, h, w] = sum of dy[n, k, p, q] * w[k, c, r, s] over the (k, p, q, r, s) whose window
                     offset (r, s) lay on pixel (h, w): h + ph = p*sh + r, w + pw = q*sw + s

Versions (the kernels are in conv2d.cu, whose opening comment explains them):
    naive  one thread per output element (y, dx, dw; db one thread per channel), every operand
           from global memory; dx gathers from dy, so no atomics.
    tiled  the default. Forward, dx and dw as tiled matrix products over the implicit im2col
           matrices (TILE x TILE blocks, both operand tiles in shared memory), db as a block
           reduction in shared memory.

Every launch allocates its output, makes its inputs C-contiguous (the kernels index flat
buffers) and passes sizes as np.int32 (the kernels' `int`). No bias is passed as a zero bias.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from minirad.kernels._check import Pair, conv2d_output_size
from minirad.kernels.runtime.cuda_c_runtimes import suffix
from minirad.kernels.runtime.grids import Geometry, grid_1d, grid_2d

SOURCE = Path(__file__).with_name("conv2d.cu")
# Must equal the #defines of conv2d.cu: the tiled kernels' shared tiles are TILE x TILE and
# assume a TILE x TILE block; db_tiled's tree reduction assumes exactly THREADS threads.
TILE = 16
THREADS = 256
MAX_ELEMENTS = 2**31 - 1 - THREADS  # int indices: a flat index plus one loop step fits


def check_int_indices(**sizes: int) -> None:
    """conv2d.cu indexes with 32-bit int: refuse arrays it could not address."""
    for name, size in sizes.items():
        if size > MAX_ELEMENTS:
            raise ValueError(f"{name}: {size} elements, more than conv2d.cu's int indices reach")


def conv_sizes(x_shape, w_shape, stride: Pair, padding: Pair) -> tuple:
    """The size arguments every convolution kernel takes: N, C, H, W, K, R, S, sh, sw, ph, pw."""
    N, C, H, W = x_shape
    K, _, R, S = w_shape
    return tuple(np.int32(v) for v in (N, C, H, W, K, R, S, *stride, *padding))


def make_versions(runtime) -> dict:
    """The VERSIONS table for one runtime (CuPy on a GPU, or the CPU emulation)."""
    xp = runtime.xp

    def launch(kernel: str, dtype, geometry: Geometry, args) -> None:
        grid, block = geometry
        runtime.load(SOURCE).launch(f"conv2d_{kernel}_{suffix(dtype)}", grid, block, args)

    def forward(version: str, x, w, b, stride: Pair, padding: Pair):
        x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
        N, _, H, W = x.shape
        K, _, R, S = w.shape
        b = xp.zeros(K, dtype=x.dtype) if b is None else xp.ascontiguousarray(b)
        P, Q = conv2d_output_size(H, W, R, S, stride, padding)
        check_int_indices(x=x.size, w=w.size, y=N * K * P * Q)
        y = xp.empty((N, K, P, Q), dtype=x.dtype)
        # naive: one thread per element of y; tiled: one block per tile of Y (K x N*P*Q)
        geometry = grid_1d(y.size, THREADS) if version == "naive" else grid_2d(K, N * P * Q, TILE)
        sizes = conv_sizes(x.shape, w.shape, stride, padding)
        launch(f"forward_{version}", x.dtype, geometry, (x, w, b, y, *sizes))
        return y

    def backward(version: str, dy, x, w, stride: Pair, padding: Pair):
        dy, x, w = (xp.ascontiguousarray(a) for a in (dy, x, w))
        N, C, H, W = x.shape
        K, _, R, S = w.shape
        P, Q = dy.shape[2], dy.shape[3]
        check_int_indices(dy=dy.size, x=x.size, w=w.size)
        dx = xp.empty(x.shape, dtype=x.dtype)
        dw = xp.empty(w.shape, dtype=w.dtype)
        db = xp.empty(K, dtype=w.dtype)
        if version == "naive":  # one thread per element of dx, of dw, of db
            geometry: dict[str, Geometry] = {
                "dx": grid_1d(dx.size, THREADS),
                "dw": grid_1d(dw.size, THREADS),
                "db": grid_1d(K, THREADS),
            }
        else:  # tiles of dX (C x N*H*W) and of dW (K x C*R*S); one block per channel for db
            geometry = {
                "dx": grid_2d(C, N * H * W, TILE),
                "dw": grid_2d(K, C * R * S, TILE),
                "db": (K, THREADS),
            }
        sizes = conv_sizes(x.shape, w.shape, stride, padding)
        launch(f"dx_{version}", x.dtype, geometry["dx"], (dy, w, dx, *sizes))
        launch(f"dw_{version}", x.dtype, geometry["dw"], (dy, x, dw, *sizes))
        # db_tiled's grid is exactly K blocks (its blocks do not check k < K): with no output
        # channel there is no block to launch, and db is empty already.
        if K > 0:
            db_args = (dy, db, np.int32(N), np.int32(K), np.int32(P * Q))
            launch(f"db_{version}", x.dtype, geometry["db"], db_args)
        return dx, dw, db

    def version(name: str) -> dict:
        return {
            "conv2d_forward": partial(forward, name),
            "conv2d_backward": partial(backward, name),
        }

    return {"naive": version("naive"), "tiled": version("tiled")}


DEFAULT_VERSION = "tiled"
