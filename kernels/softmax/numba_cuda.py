"""Softmax, log-softmax and fused softmax + cross-entropy in Numba CUDA.

Shapes:  x, y, dy, dx of any shape, normalised along `axis` (moved last on the host by rows.py,
         so every kernel sees contiguous rows (R, L));  logits, dlogits (N, V);  targets (N,) int.

    m = max_j x_j,   softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
    softmax backward:      dx = y * (dy - sum_j dy_j y_j)
    log_softmax backward:  dx = dy - exp(y) * sum_j dy_j
    cross-entropy:  loss = mean over the M kept rows of (m + log sum_j exp(x_j - m) - x_target),
                    dlogits = (softmax(x) - onehot(target)) / M on kept rows, 0 on ignored rows
                    (the kernels write the gradient of the sum; the host code divides both
                    by M on the device, so M is never read back)

Every row needs one or two reductions (a max, a sum) before any output can be written. The
versions differ in who does them:

    naive  one thread per row loops over the whole row, alone. Simple, but a row of a 10 000-word
           vocabulary is 10 000 sequential steps for one thread, and a batch of 32 rows keeps only
           32 threads of a GPU busy.
    block  one block of THREADS_1D threads per row. Each thread strides over the row (thread t
           takes elements t, t + THREADS_1D, ...) and keeps a partial max or sum; the partials go
           to shared memory and are combined by a tree reduction: at each step the first half of
           the active threads adds in the second half's values, and the block synchronises before
           the next step reads them. log2(THREADS_1D) steps instead of THREADS_1D.

The cross-entropy kernel fuses softmax, the row's loss and its gradient (one row per thread,
or per block): the probabilities are written straight into dlogits and the softmax Jacobian is
never formed. The mean over kept rows is finished by the host code, on the device: sum of the
per-row losses / M.

Launch geometry (THREADS_1D) comes from kernels/runtime/numba_cuda.py; the block version's
shared-memory arrays need it as a compile-time size, and its tree needs it to be a power of two.
"""

from __future__ import annotations

import math

from minirad.kernels.runtime.numba_cuda import THREADS_1D, cuda, grid_1d, xp
from minirad.kernels.softmax.rows import as_rows, from_rows

numba_cuda = cuda()


@numba_cuda.jit(device=True)
def _larger(a, b):
    # Not the builtin max: Numba 0.68 types max(a, b) through a varargs overload that its CUDA
    # target cannot compile ("Signature mismatch" from cuda.compile_ptx; the simulator runs it).
    return b if b > a else a


# ----------------------------------------------------------------------------------------------
# naive: one thread per row
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(device=True)
def _row_max_and_sum(x, row):
    """(m, sum_j exp(x[row, j] - m)) of one row, by one thread."""
    m = x[row, 0]
    for j in range(1, x.shape[1]):
        m = _larger(m, x[row, j])
    total = x.dtype.type(0)  # a zero of x's dtype: no float64 on a float32 GPU path
    for j in range(x.shape[1]):
        total += math.exp(x[row, j] - m)
    return m, total


@numba_cuda.jit(cache=True)
def _softmax_rows_naive(x, out, log_output):
    row = numba_cuda.grid(1)
    if row >= x.shape[0]:
        return
    m, total = _row_max_and_sum(x, row)
    for j in range(x.shape[1]):
        if log_output:
            out[row, j] = x[row, j] - m - math.log(total)
        else:
            out[row, j] = math.exp(x[row, j] - m) / total


@numba_cuda.jit(cache=True)
def _softmax_backward_rows_naive(dy, y, dx, log_output):
    row = numba_cuda.grid(1)
    if row >= y.shape[0]:
        return
    total = y.dtype.type(0)
    for j in range(y.shape[1]):
        total += dy[row, j] if log_output else dy[row, j] * y[row, j]
    for j in range(y.shape[1]):
        if log_output:
            dx[row, j] = dy[row, j] - math.exp(y[row, j]) * total
        else:
            dx[row, j] = y[row, j] * (dy[row, j] - total)


@numba_cuda.jit(cache=True)
def _cross_entropy_rows_naive(logits, targets, ignore_index, dlogits, row_loss):
    row = numba_cuda.grid(1)
    if row >= logits.shape[0]:
        return
    target = targets[row]
    if target == ignore_index:
        for j in range(logits.shape[1]):
            dlogits[row, j] = 0
        row_loss[row] = 0
        return
    m, total = _row_max_and_sum(logits, row)
    row_loss[row] = m + math.log(total) - logits[row, target]
    # Constants in the logits' dtype: a bare 1 would turn float32 maths to float64.
    one, zero = logits.dtype.type(1), logits.dtype.type(0)
    for j in range(logits.shape[1]):
        probability = math.exp(logits[row, j] - m) / total
        dlogits[row, j] = probability - (one if j == target else zero)


# ----------------------------------------------------------------------------------------------
# block: one block per row, shared-memory tree reductions
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(device=True)
def _block_max(partial, value):
    """The max of `value` over the block's threads, returned to every thread.

    partial: a shared array of THREADS_1D elements. Each step halves the active threads:
    thread t < half keeps the larger of partial[t] and partial[t + half]. The syncthreads after
    each step makes the step's results visible before the next step reads them.
    """
    t = numba_cuda.threadIdx.x
    partial[t] = value
    numba_cuda.syncthreads()  # every partial written before anyone combines them
    half = THREADS_1D // 2
    while half > 0:
        if t < half:
            partial[t] = _larger(partial[t], partial[t + half])
        numba_cuda.syncthreads()
        half //= 2
    result = partial[0]
    numba_cuda.syncthreads()  # everyone has read partial[0] before a next reduction reuses it
    return result


@numba_cuda.jit(device=True)
def _block_sum(partial, value):
    """The sum of `value` over the block's threads, returned to every thread (see _block_max)."""
    t = numba_cuda.threadIdx.x
    partial[t] = value
    numba_cuda.syncthreads()
    half = THREADS_1D // 2
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        numba_cuda.syncthreads()
        half //= 2
    result = partial[0]
    numba_cuda.syncthreads()
    return result


@numba_cuda.jit(device=True)
def _block_row_max_and_sum(x, row, partial):
    """(m, sum_j exp(x[row, j] - m)) of one row, by the whole block."""
    t = numba_cuda.threadIdx.x
    m = x[row, 0]  # x[row, 0] is in the row, so it is a correct start for every thread's max
    for j in range(t, x.shape[1], THREADS_1D):
        m = _larger(m, x[row, j])
    m = _block_max(partial, m)
    total = x.dtype.type(0)
    for j in range(t, x.shape[1], THREADS_1D):
        total += math.exp(x[row, j] - m)
    return m, _block_sum(partial, total)


@numba_cuda.jit(cache=True)
def _softmax_rows_block(x, out, log_output):
    partial = numba_cuda.shared.array(THREADS_1D, dtype=x.dtype)
    row, t = numba_cuda.blockIdx.x, numba_cuda.threadIdx.x
    m, total = _block_row_max_and_sum(x, row, partial)
    for j in range(t, x.shape[1], THREADS_1D):
        if log_output:
            out[row, j] = x[row, j] - m - math.log(total)
        else:
            out[row, j] = math.exp(x[row, j] - m) / total


@numba_cuda.jit(cache=True)
def _softmax_backward_rows_block(dy, y, dx, log_output):
    partial = numba_cuda.shared.array(THREADS_1D, dtype=y.dtype)
    row, t = numba_cuda.blockIdx.x, numba_cuda.threadIdx.x
    total = y.dtype.type(0)
    for j in range(t, y.shape[1], THREADS_1D):
        total += dy[row, j] if log_output else dy[row, j] * y[row, j]
    total = _block_sum(partial, total)
    for j in range(t, y.shape[1], THREADS_1D):
        if log_output:
            dx[row, j] = dy[row, j] - math.exp(y[row, j]) * total
        else:
            dx[row, j] = y[row, j] * (dy[row, j] - total)


@numba_cuda.jit(cache=True)
def _cross_entropy_rows_block(logits, targets, ignore_index, dlogits, row_loss):
    partial = numba_cuda.shared.array(THREADS_1D, dtype=logits.dtype)
    row, t = numba_cuda.blockIdx.x, numba_cuda.threadIdx.x
    target = targets[row]
    if target == ignore_index:  # the whole block takes this branch: no thread skips a sync
        for j in range(t, logits.shape[1], THREADS_1D):
            dlogits[row, j] = 0
        if t == 0:
            row_loss[row] = 0
        return
    m, total = _block_row_max_and_sum(logits, row, partial)
    one, zero = logits.dtype.type(1), logits.dtype.type(0)
    for j in range(t, logits.shape[1], THREADS_1D):
        probability = math.exp(logits[row, j] - m) / total
        dlogits[row, j] = probability - (one if j == target else zero)
    if t == 0:
        row_loss[row] = m + math.log(total) - logits[row, target]


# ----------------------------------------------------------------------------------------------
# Host side: rows in, rows out; the launch is the only thing the versions change
# ----------------------------------------------------------------------------------------------


def _launch(kernel, per_row: str, n_rows: int):
    """kernel[grid, block] for n_rows rows: one thread ("thread") or one block ("block") each."""
    if per_row == "thread":
        return kernel[grid_1d(n_rows)]
    return kernel[n_rows, THREADS_1D]


def _version(per_row: str, rows_kernel, backward_rows_kernel, cross_entropy_kernel) -> dict:
    def softmax_any(x, axis, log_output):
        rows = as_rows(xp(), x, axis)
        out = xp().empty_like(rows)
        _launch(rows_kernel, per_row, rows.shape[0])(rows, out, log_output)
        return from_rows(xp(), out, x, axis)

    def backward_any(dy, y, axis, log_output):
        y_rows = as_rows(xp(), y, axis)
        dx = xp().empty_like(y_rows)
        _launch(backward_rows_kernel, per_row, y_rows.shape[0])(
            as_rows(xp(), dy, axis), y_rows, dx, log_output
        )
        return from_rows(xp(), dx, y, axis)

    def softmax_cross_entropy(logits, targets, ignore_index):
        logits = xp().ascontiguousarray(logits)
        targets = xp().ascontiguousarray(targets, dtype=xp().int64)
        # M, the rows the mean is over, stays on the device: reading it here would stall the
        # host until the GPU caught up, once per loss. So the kernel writes the gradient of the
        # *sum* and one multiply on the device divides by M (at least 1: with no kept row the
        # loss is 0, not 0 / 0).
        kept = xp().maximum((targets != ignore_index).sum(), 1).astype(logits.dtype)
        dlogits = xp().empty_like(logits)
        row_loss = xp().empty(logits.shape[0], dtype=logits.dtype)
        _launch(cross_entropy_kernel, per_row, logits.shape[0])(
            logits, targets, ignore_index, dlogits, row_loss
        )
        dlogits *= 1 / kept
        return row_loss.sum() / kept, dlogits  # ignored rows hold a loss of 0

    return {
        "softmax": lambda x, axis: softmax_any(x, axis, False),
        "softmax_backward": lambda dy, y, axis: backward_any(dy, y, axis, False),
        "log_softmax": lambda x, axis: softmax_any(x, axis, True),
        "log_softmax_backward": lambda dy, y, axis: backward_any(dy, y, axis, True),
        "softmax_cross_entropy": softmax_cross_entropy,
    }


VERSIONS = {
    "naive": _version(
        "thread", _softmax_rows_naive, _softmax_backward_rows_naive, _cross_entropy_rows_naive
    ),
    "block": _version(
        "block", _softmax_rows_block, _softmax_backward_rows_block, _cross_entropy_rows_block
    ),
}
DEFAULT_VERSION = "block"
