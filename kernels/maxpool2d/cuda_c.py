"""2-D max-pooling in CUDA C (maxpool2d.cu): host code shared by `cupy` and `cuda_c_cpu`.

Shapes:  x (N, C, H, W)   y, argmax, dy (N, C, P, Q)   kernel (kh, kw), stride (sh, sw),
         padding (ph, pw) with ph <= kh // 2, pw <= kw // 2 (padding counts as -infinity).

    y[n, c, p, q]      = max_{r < kh, s < kw} x[n, c, p*sh + r - ph, q*sw + s - pw]
    argmax[n, c, p, q] = h*W + w of that maximum (the first in window order on ties; NaN wins)
    dx[n, c, argmax[n, c, p, q]] += dy[n, c, p, q]

Versions (the forward is the same one-thread-per-output scan in both):
    atomic  backward with one thread per output element and atomicAdd into a zeroed dx: simple,
            but colliding atomics serialise and make the float sum's order nondeterministic.
    gather  backward with one thread per input element summing the dy of the outputs that chose
            it: no atomics, every dx element written once, the same bits on every run.
DEFAULT_VERSION is "gather", for that determinism at no extra cost; see maxpool2d.cu.

maxpool2d.cu indexes with 32-bit int: each op checks the sizes from the shapes
(grids.check_int_indices) before it copies or allocates anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from minirad.kernels._check import Pair, pool2d_output_size
from minirad.kernels.runtime.cuda_c_runtimes import suffix
from minirad.kernels.runtime.grids import check_int_indices, grid_1d

SOURCE = Path(__file__).with_name("maxpool2d.cu")
THREADS = 256  # threads per block: every kernel here is one thread per element, 1-D grid


def launch_1d(runtime, name: str, n_threads: int, args) -> None:
    """Run kernel `name` of maxpool2d.cu with at least n_threads threads, THREADS per block."""
    grid, block = grid_1d(n_threads, THREADS)
    runtime.load(SOURCE).launch(name, grid, block, args)


def make_versions(runtime) -> dict:
    """The VERSIONS table for one runtime (CuPy on a GPU, or the CPU emulation)."""
    xp = runtime.xp

    def maxpool2d_forward(x, kernel: Pair, stride: Pair, padding: Pair):
        N, C, H, W = x.shape
        P, Q = pool2d_output_size(H, W, kernel[0], kernel[1], stride, padding)
        check_int_indices(SOURCE.name, x=x.size, y=N * C * P * Q)
        x = xp.ascontiguousarray(x)
        y = xp.empty((N, C, P, Q), dtype=x.dtype)
        argmax = xp.empty((N, C, P, Q), dtype=xp.int64)
        sizes = (N * C, H, W, P, Q, *kernel, *stride, *padding)
        args = (x, y, argmax, *map(np.int32, sizes))
        launch_1d(runtime, f"maxpool2d_forward_{suffix(x.dtype)}", y.size, args)
        return y, argmax

    def check_backward_sizes(dy, x_shape) -> None:
        check_int_indices(SOURCE.name, dy=dy.size, dx=math.prod(x_shape))

    def maxpool2d_backward_atomic(dy, argmax, x_shape, kernel: Pair, stride: Pair, padding: Pair):
        check_backward_sizes(dy, x_shape)
        N, C, H, W = x_shape
        P, Q = dy.shape[2:]
        dx = xp.zeros(x_shape, dtype=dy.dtype)  # the atomics add into it
        dy, argmax = xp.ascontiguousarray(dy), xp.ascontiguousarray(argmax, dtype=xp.int64)
        args = (dy, argmax, dx, *map(np.int32, (N * C, H * W, P * Q)))
        launch_1d(runtime, f"maxpool2d_backward_atomic_{suffix(dy.dtype)}", dy.size, args)
        return dx

    def maxpool2d_backward_gather(dy, argmax, x_shape, kernel: Pair, stride: Pair, padding: Pair):
        check_backward_sizes(dy, x_shape)
        N, C, H, W = x_shape
        P, Q = dy.shape[2:]
        dx = xp.empty(x_shape, dtype=dy.dtype)  # every element is written exactly once
        sizes = (N * C, H, W, P, Q, *kernel, *stride, *padding)
        dy, argmax = xp.ascontiguousarray(dy), xp.ascontiguousarray(argmax, dtype=xp.int64)
        args = (dy, argmax, dx, *map(np.int32, sizes))
        launch_1d(runtime, f"maxpool2d_backward_gather_{suffix(dy.dtype)}", dx.size, args)
        return dx

    return {
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
