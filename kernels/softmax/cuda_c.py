"""Softmax family in CUDA C (softmax.cu): host code shared by the `cupy` and `cuda_c_cpu` backends.

Shapes:  x, y, dy, dx of any shape, normalised along `axis` (moved last on the host by rows.py,
         so every kernel sees contiguous rows (R, L));  logits, dlogits (N, V);  targets (N,) int.

    m = max_j x_j,   softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
    softmax backward:      dx = y * (dy - sum_j dy_j y_j)
    log_softmax backward:  dx = dy - exp(y) * sum_j dy_j
    cross-entropy:  loss = mean over the M kept rows of (m + log sum_j exp(x_j - m) - x_target),
                    dlogits = (softmax(x) - onehot(target)) / M on kept rows, 0 on ignored rows

Versions (see softmax.cu):
    naive  one thread per row loops over the row alone; grid of ceil(R / THREADS) blocks.
    block  one block of THREADS threads per row (grid = R): strided partial max and sum, combined
           by a shared-memory tree reduction.
The cross-entropy kernel of each version writes dlogits and a loss per row; the mean over kept
rows is finished here, on the host: sum of the row losses / M (0 when every row is ignored).

softmax.cu indexes with 32-bit int (a row's start as long long): each op checks its arrays'
sizes (grids.check_int_indices) before it copies or allocates anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minirad.kernels.runtime.cuda_c_runtimes import suffix
from minirad.kernels.runtime.grids import Geometry, check_int_indices, grid_1d
from minirad.kernels.softmax.rows import as_rows, from_rows

SOURCE = Path(__file__).with_name("softmax.cu")
THREADS = 256  # must equal THREADS in softmax.cu: the block kernels' shared arrays have that size


def row_grid(version: str, n_rows: int) -> Geometry:
    """(grid, block) for n_rows rows: one thread per row (naive) or one block per row (block).

    Never 0 blocks (CUDA refuses that launch): a block past the last row returns at once.
    """
    if version == "naive":
        return grid_1d(n_rows, THREADS)
    return max(1, n_rows), THREADS


def make_versions(runtime) -> dict:
    """The VERSIONS table for one runtime (CuPy on a GPU, or the CPU emulation)."""
    xp = runtime.xp

    def launch(name: str, version: str, n_rows: int, args) -> None:
        grid, block = row_grid(version, n_rows)
        runtime.load(SOURCE).launch(name, grid, block, args)

    def version(name: str) -> dict:
        def softmax_any(x, axis, log_output: bool):
            check_int_indices(SOURCE.name, x=x.size)
            rows = as_rows(xp, x, axis)
            out = xp.empty_like(rows)
            R, L = rows.shape
            args = (rows, out, np.int32(R), np.int32(L), np.int32(log_output))
            launch(f"softmax_rows_{name}_{suffix(x.dtype)}", name, R, args)
            return from_rows(xp, out, x, axis)

        def backward_any(dy, y, axis, log_output: bool):
            check_int_indices(SOURCE.name, dy=dy.size, y=y.size)
            y_rows, dy_rows = as_rows(xp, y, axis), as_rows(xp, dy, axis)
            dx = xp.empty_like(y_rows)
            R, L = y_rows.shape
            args = (dy_rows, y_rows, dx, np.int32(R), np.int32(L), np.int32(log_output))
            launch(f"softmax_backward_rows_{name}_{suffix(y.dtype)}", name, R, args)
            return from_rows(xp, dx, y, axis)

        def softmax_cross_entropy(logits, targets, ignore_index):
            check_int_indices(SOURCE.name, logits=logits.size)
            logits = xp.ascontiguousarray(logits)
            targets = xp.ascontiguousarray(targets, dtype=xp.int64)
            # M, the rows the mean is over, stays on the device: reading it here would stall
            # the host until the GPU caught up, once per loss. So the kernel writes the
            # gradient of the *sum* and one multiply on the device divides by M (at least 1:
            # with no kept row the loss is 0, not 0 / 0).
            kept = xp.maximum((targets != ignore_index).sum(), 1).astype(logits.dtype)
            N, V = logits.shape
            dlogits = xp.empty_like(logits)
            row_loss = xp.empty(N, dtype=logits.dtype)
            args = (
                logits,
                targets,
                np.int64(ignore_index),
                dlogits,
                row_loss,
                np.int32(N),
                np.int32(V),
            )
            launch(f"cross_entropy_rows_{name}_{suffix(logits.dtype)}", name, N, args)
            dlogits *= 1 / kept
            return row_loss.sum() / kept, dlogits  # ignored rows hold a loss of 0

        return {
            "softmax": lambda x, axis: softmax_any(x, axis, False),
            "softmax_backward": lambda dy, y, axis: backward_any(dy, y, axis, False),
            "log_softmax": lambda x, axis: softmax_any(x, axis, True),
            "log_softmax_backward": lambda dy, y, axis: backward_any(dy, y, axis, True),
            "softmax_cross_entropy": softmax_cross_entropy,
        }

    return {"naive": version("naive"), "block": version("block")}


DEFAULT_VERSION = "block"
