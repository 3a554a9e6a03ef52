"""Call every op of a backend once on tiny inputs: the smallest run that compiles everything.

Used where a whole backend must be exercised without caring about the numbers: the first-call
(compile) time of benchmarks/compile_time.py, and the recording of every Numba CUDA kernel
launch in kernels/verify/ptx_check.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from minirad import kernels


def exercise_every_op(backend: str, dtypes=(np.float32, np.float64)) -> dict[str, float]:
    """Run every version of every op folder of `backend` in each dtype; seconds per folder."""
    import time

    rng = np.random.default_rng(0)
    seconds = {}
    for family, versions in kernels.get(backend).versions.items():
        start = time.perf_counter()
        for version in versions:
            ops = kernels.get(backend, **{family: version})
            for dtype in dtypes:

                def a(*shape, dtype=dtype, xp=ops.xp):  # made where the backend computes
                    return xp.asarray(rng.standard_normal(shape).astype(dtype))

                exercise(ops, family, a)
        seconds[family] = time.perf_counter() - start
    return seconds


def exercise(ops: kernels.Ops, family: str, a: Callable[..., np.ndarray]) -> None:
    """One forward and one backward of every op in `family`, arrays made by a(*shape)."""
    if family == "conv2d":
        # N*P*Q = 512: long enough that the GPU versions split the dw and db sums into slices
        # (grids.split_reduction) and launch the kernel that adds the slices up.
        x, w = a(8, 2, 8, 8), a(2, 2, 3, 3)
        y = ops.conv2d_forward(x, w, a(2), 1, 1)
        ops.conv2d_backward(y, x, w, 1, 1)
    elif family == "maxpool2d":
        x = a(1, 2, 4, 4)
        y, argmax = ops.maxpool2d_forward(x, 2)
        ops.maxpool2d_backward(y, argmax, x.shape, 2)
    elif family == "linear":
        x, w = a(2, 3), a(4, 3)
        y = ops.linear_forward(x, w, a(4))
        ops.linear_backward(y, x, w)
    elif family == "rnn":
        x, h, c = a(2, 3), a(2, 2), a(2, 2)
        h_new = ops.rnn_tanh_cell_forward(x, h, a(2, 3), a(2, 2), a(2), a(2))
        ops.rnn_tanh_cell_backward(h_new, x, h, a(2, 3), a(2, 2), h_new)
        h_new, c_new, cache = ops.lstm_cell_forward(x, h, c, a(8, 3), a(8, 2), a(8), a(8))
        ops.lstm_cell_backward(h_new, c_new, cache)
        h_new, cache = ops.gru_cell_forward(x, h, a(6, 3), a(6, 2), a(6), a(6))
        ops.gru_cell_backward(h_new, cache)
    elif family == "softmax":
        x = a(2, 3)
        y = ops.softmax(x, -1)
        ops.softmax_backward(x, y, -1)
        y = ops.log_softmax(x, -1)
        ops.log_softmax_backward(x, y, -1)
        ops.softmax_cross_entropy(x, ops.xp.asarray(np.array([0, -100])), -100)
