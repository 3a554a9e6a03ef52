"""Linear layer in CUDA C (linear.cu): host code shared by the `cupy` and `cuda_c_cpu` backends.

Shapes:  x (N, in)   w (out, in)   b (out,) or None   y, dy (N, out)

    y = x @ w.T + b        dx = dy @ w        dw = dy.T @ x        db = sum_n dy[n]

The products run the kernel `matmul_<version>` of linear.cu, which reads its operands through
strides, so the transposes above are passed as strides, never copied. `matmul` is also what the
recurrent cells' CUDA C host code calls (rnn/cuda_c.py).

Versions: naive (one thread per output, operands from global memory) and tiled (shared-memory
tiles of TILE x TILE); see linear.cu.

linear.cu indexes with 32-bit int: each op checks its arrays' sizes from their shapes
(grids.check_int_indices) before it copies or allocates anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minirad.kernels.runtime.cuda_c_runtimes import suffix
from minirad.kernels.runtime.grids import check_int_indices, grid_1d, grid_2d

SOURCE = Path(__file__).with_name("linear.cu")
TILE = 16  # must equal TILE in linear.cu: the tiled kernel's block is TILE x TILE threads
THREADS = 256  # threads per block of the elementwise kernels


def matmul(runtime, version: str, A, B, a_strides, b_strides, M: int, N: int, K: int):
    """C (M, N) = A @ B with A[m, k] = A_flat[m * a_strides[0] + k * a_strides[1]] (same for B).

    A and B are C-contiguous arrays (any shape); the strides, in elements, say how to read them.
    """
    C = runtime.xp.empty((M, N), dtype=A.dtype)
    grid, block = grid_2d(M, N, TILE)
    args = (
        A,
        B,
        C,
        np.int32(M),
        np.int32(N),
        np.int32(K),
        *map(np.int32, a_strides),
        *map(np.int32, b_strides),
    )
    runtime.load(SOURCE).launch(f"matmul_{version}_{suffix(A.dtype)}", grid, block, args)
    return C


def add_bias(runtime, y, b) -> None:
    rows, cols = y.shape
    grid, block = grid_1d(rows * cols, THREADS)
    args = (y, b, np.int32(rows), np.int32(cols))
    runtime.load(SOURCE).launch(f"add_bias_{suffix(y.dtype)}", grid, block, args)


def column_sums(runtime, dy):
    rows, cols = dy.shape
    db = runtime.xp.empty(cols, dtype=dy.dtype)
    grid, block = grid_1d(cols, THREADS)
    args = (dy, db, np.int32(rows), np.int32(cols))
    runtime.load(SOURCE).launch(f"column_sums_{suffix(dy.dtype)}", grid, block, args)
    return db


def make_versions(runtime) -> dict:
    """The VERSIONS table for one runtime (CuPy on a GPU, or the CPU emulation)."""
    xp = runtime.xp

    def version(name: str) -> dict:
        def linear_forward(x, w, b):
            (N, n_in), n_out = x.shape, w.shape[0]
            check_int_indices(SOURCE.name, x=x.size, w=w.size, y=N * n_out)
            x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
            # y = x @ w.T: B[k, n] = w[n, k] -> strides (1, in)
            y = matmul(runtime, name, x, w, (n_in, 1), (1, n_in), N, n_out, n_in)
            if b is not None:
                add_bias(runtime, y, xp.ascontiguousarray(b))
            return y

        def linear_backward(dy, x, w):
            check_int_indices(SOURCE.name, dy=dy.size, x=x.size, w=w.size)  # dx, dw: as x, w
            dy, x, w = (xp.ascontiguousarray(a) for a in (dy, x, w))
            (N, n_in), n_out = x.shape, w.shape[0]
            dx = matmul(runtime, name, dy, w, (n_out, 1), (n_in, 1), N, n_in, n_out)
            # dw = dy.T @ x: A[m, k] = dy[k, m] -> strides (1, out)
            dw = matmul(runtime, name, dy, x, (1, n_out), (n_in, 1), n_out, n_in, N)
            return dx, dw, column_sums(runtime, dy)

        return {"linear_forward": linear_forward, "linear_backward": linear_backward}

    return {"naive": version("naive"), "tiled": version("tiled")}


DEFAULT_VERSION = "tiled"
