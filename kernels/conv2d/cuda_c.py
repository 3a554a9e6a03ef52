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
           reduction in shared memory. dw and db cut their sum over n, p, q into slices
           (grid.z for dw, grid.y for db), one partial result per slice, and a second kernel
           adds the slices in a fixed order: deterministic, unlike atomicAdd (conv2d.cu says
           why). The slice count comes from the work size (grids.split_reduction): enough
           blocks to fill the GPU, none walking fewer than MIN_SLICE_STEPS loop steps.

Every launch allocates its output, makes its inputs C-contiguous (the kernels index flat
buffers) and passes sizes as np.int32 (the kernels' `int`). No bias is passed as a zero bias.
The sizes are checked first, from the shapes, against what int indices reach
(grids.check_int_indices): an array too large is refused before anything is copied.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from minirad.kernels._check import Pair, conv2d_output_size
from minirad.kernels.runtime.cuda_c_runtimes import suffix
from minirad.kernels.runtime.grids import (
    MIN_SLICE_STEPS,
    Geometry,
    check_int_indices,
    grid_1d,
    grid_2d,
    split_reduction,
)

SOURCE = Path(__file__).with_name("conv2d.cu")
# Must equal the #defines of conv2d.cu: the tiled kernels' shared tiles are TILE x TILE and
# assume a TILE x TILE block; db_tiled's tree reduction assumes exactly THREADS threads.
TILE = 16
THREADS = 256


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
        N, _, H, W = x.shape
        K, _, R, S = w.shape
        P, Q = conv2d_output_size(H, W, R, S, stride, padding)
        check_int_indices(SOURCE.name, x=x.size, w=w.size, y=N * K * P * Q)  # before any copy
        x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
        b = xp.zeros(K, dtype=x.dtype) if b is None else xp.ascontiguousarray(b)
        y = xp.empty((N, K, P, Q), dtype=x.dtype)
        # naive: one thread per element of y; tiled: one block per tile of Y (K x N*P*Q)
        geometry = grid_1d(y.size, THREADS) if version == "naive" else grid_2d(K, N * P * Q, TILE)
        sizes = conv_sizes(x.shape, w.shape, stride, padding)
        launch(f"forward_{version}", x.dtype, geometry, (x, w, b, y, *sizes))
        return y

    def backward(version: str, dy, x, w, stride: Pair, padding: Pair):
        check_int_indices(SOURCE.name, dy=dy.size, x=x.size, w=w.size)  # before any copy
        dy, x, w = (xp.ascontiguousarray(a) for a in (dy, x, w))
        N, C, H, W = x.shape
        K, _, R, S = w.shape
        P, Q = dy.shape[2], dy.shape[3]
        dx = xp.empty(x.shape, dtype=x.dtype)
        sizes = conv_sizes(x.shape, w.shape, stride, padding)
        db_sizes = (np.int32(N), np.int32(K), np.int32(P * Q))
        if version == "naive":  # one thread per element of dx, of dw, of db
            dw, db = xp.empty(w.shape, dtype=w.dtype), xp.empty(K, dtype=w.dtype)
            launch("dx_naive", x.dtype, grid_1d(dx.size, THREADS), (dy, w, dx, *sizes))
            launch("dw_naive", x.dtype, grid_1d(dw.size, THREADS), (dy, x, dw, *sizes))
            launch("db_naive", x.dtype, grid_1d(K, THREADS), (dy, db, *db_sizes))
            return dx, dw, db
        # tiles of dX (C x N*H*W); dW (K x CRS) and db (K) each summed in slices of N*P*Q
        launch("dx_tiled", x.dtype, grid_2d(C, N * H * W, TILE), (dy, w, dx, *sizes))
        return dx, dw_tiled(dy, x, w, sizes, N * P * Q), db_tiled(dy, w.dtype, db_sizes)

    def dw_tiled(dy, x, w, sizes, NPQ: int):
        """dW by slices of its sum over npq: grid (CRS tiles, K tiles, slices), then the sum."""
        K, C, R, S = w.shape
        (crs_tiles, k_tiles), block = grid_2d(K, C * R * S, TILE)
        slices, slice_length = split_reduction(
            crs_tiles * k_tiles, NPQ, MIN_SLICE_STEPS * TILE, granule=TILE
        )
        dw = xp.empty(w.shape, dtype=w.dtype)
        by_slice = dw if slices == 1 else slice_buffer(slices, dw)  # one slice: straight to dw
        args = (dy, x, by_slice, *sizes, np.int32(slice_length))
        launch("dw_tiled", w.dtype, ((crs_tiles, k_tiles, slices), block), args)
        if slices > 1:
            sum_slices(by_slice, dw, slices)
        return dw

    def db_tiled(dy, dtype, db_sizes):
        """db by slices of its sum over npq: grid (K, slices), one block per (k, slice)."""
        N, K, PQ = (int(v) for v in db_sizes)
        db = xp.empty(K, dtype=dtype)
        # The blocks do not check k < K (the grid is exactly K wide): with no output channel
        # there is no block to launch, and db is empty already.
        if K == 0:
            return db
        slices, slice_length = split_reduction(K, N * PQ, MIN_SLICE_STEPS * THREADS)
        by_slice = db if slices == 1 else slice_buffer(slices, db)
        args = (dy, by_slice, *db_sizes, np.int32(slice_length))
        launch("db_tiled", dtype, ((K, slices), THREADS), args)
        if slices > 1:
            sum_slices(by_slice, db, slices)
        return db

    def slice_buffer(slices: int, out):
        """Where the first pass writes: one partial `out` per slice, (slices, out.size)."""
        check_int_indices(SOURCE.name, partial=slices * out.size)
        return xp.empty((slices, out.size), dtype=out.dtype)

    def sum_slices(by_slice, out, slices: int) -> None:
        """out = by_slice summed over its slices, in order: the second pass of dw and db."""
        args = (by_slice, out, np.int32(out.size), np.int32(slices))
        launch("sum_slices_tiled", out.dtype, grid_1d(out.size, THREADS), args)

    def version(name: str) -> dict:
        return {
            "conv2d_forward": partial(forward, name),
            "conv2d_backward": partial(backward, name),
        }

    return {"naive": version("naive"), "tiled": version("tiled")}


DEFAULT_VERSION = "tiled"
