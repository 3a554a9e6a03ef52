"""Recurrent cells in CUDA C (rnn.cu): host code shared by the `cupy` and `cuda_c_cpu` backends.

Shapes:  x (B, I)   h, c, h_new, c_new (B, H)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)
         G = 1 (tanh-RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), PyTorch's layout.

Which kernels a cell step launches, in each version, is written once for both GPU backends in
device_host.py: the GEMMs are linear.cu's matmul, add_bias and column_sums, the gate math is
rnn.cu's kernels (their formulas are at its top). This file says how that host code runs here:

    a kernel    rnn.cu's `<name>_f32` or `<name>_f64`, one thread per item, the sizes B and H
                appended as C ints
    a product   linear.cu's matmul_<version>; a transposed operand (w.T, da.T) is passed as the
                array it views, with its strides swapped: no copy

Versions: naive (matmul_naive, add_bias, a chain of small elementwise kernels) and fused
(matmul_tiled, ONE gate kernel per cell and direction, the biases folded in).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from minirad.kernels.linear.cuda_c import SOURCE as LINEAR_SOURCE
from minirad.kernels.linear.cuda_c import THREADS, add_bias, column_sums, matmul
from minirad.kernels.rnn import device_host
from minirad.kernels.runtime.cuda_c_runtimes import suffix
from minirad.kernels.runtime.grids import check_int_indices, grid_1d

SOURCE = Path(__file__).with_name("rnn.cu")


def make_versions(runtime) -> dict:
    """The VERSIONS table for one runtime (CuPy on a GPU, or the CPU emulation)."""
    return device_host.make_versions(_device(runtime))


def _device(runtime) -> device_host.CellDevice:
    """How the cells' host code (device_host.py) runs on `runtime`: rnn.cu's kernels by name."""

    def launch(kernel: str, n: int, arrays: tuple, B: int, H: int) -> None:
        _launch(runtime, kernel, n, (*arrays, B, H))

    def sum_activate(gi, gh, gates, cols: int, H: int, tanh_gate: int) -> None:
        B, row_length = gates.shape
        args = (gi, gh, gates, B, row_length, cols, H, tanh_gate)
        _launch(runtime, "sum_activate", B * cols, args)

    return device_host.CellDevice(
        xp=runtime.xp,
        matmul=partial(_matmul, runtime),
        add_bias=partial(add_bias, runtime),
        column_sums=partial(column_sums, runtime),
        launch=launch,
        sum_activate=sum_activate,
        # rnn.cu and linear.cu index with int: the larger arrays are refused before any copy
        check_sizes=partial(check_int_indices, f"{SOURCE.name} and {LINEAR_SOURCE.name}"),
    )


def _launch(runtime, kernel: str, n: int, args: tuple) -> None:
    """Run rnn.cu's `kernel` with one thread per item, n items.

    The dtype of the first argument picks the _f32 or _f64 entry point; Python ints among the
    arguments are passed as C ints.
    """
    grid, block = grid_1d(n, THREADS)
    c_args = tuple(np.int32(a) if isinstance(a, int) else a for a in args)
    entry = f"{kernel}_{suffix(args[0].dtype)}"
    runtime.load(SOURCE).launch(entry, grid, block, c_args)


def _matmul(runtime, a, b, gemm: str):
    """a @ b by linear.cu's matmul_<gemm>, for a and b C-contiguous or transposes (.T) of such.

    matmul reads A[m, k] = A_flat[m * a_strides[0] + k * a_strides[1]], so a transpose is passed
    as the array it views, with its strides swapped: no copy.
    """
    (M, K), N = a.shape, b.shape[1]
    (a_flat, a_strides), (b_flat, b_strides) = _strided(a), _strided(b)
    return matmul(runtime, gemm, a_flat, b_flat, a_strides, b_strides, M, N, K)


def _strided(view) -> tuple:
    """(C-contiguous array, element strides (row, column)) that read the 2-D `view`."""
    flat = view if view.flags.c_contiguous else view.T  # a transpose: the array it views
    if not flat.flags.c_contiguous:
        raise ValueError(f"matmul operand {view.shape}: not C-contiguous nor a transpose of such")
    return flat, tuple(stride // view.itemsize for stride in view.strides)


DEFAULT_VERSION = "fused"
