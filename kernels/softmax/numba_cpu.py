"""Softmax, log-softmax and fused softmax + cross-entropy, Numba CPU backend.

Shapes:  x, y, dy, dx of any shape, normalised along `axis` (moved last by rows.py, so every
         kernel sees rows (R, L));  logits, dlogits (N, V);  targets (N,) integers.

    m = max_j x_j,   softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
    softmax backward:      dx = y * (dy - sum_j dy_j y_j)
    log_softmax backward:  dx = dy - exp(y) * sum_j dy_j
    cross-entropy:  loss = mean over kept rows of (log sum_j exp(x_j) - x_target),
                    dlogits = (softmax(x) - onehot(target)) / M on kept rows, 0 on ignored rows

Versions:
    naive     the formulas row by row, one thread, each quantity in its own loop (exp computed
              twice per element in softmax: once for the sum, once for the output).
    parallel  the default: the same row loops with the rows spread over the cores (`prange`; on
              fewer than PARALLEL_FROM elements the naive kernels, on one thread), and
              exp computed once per element: a max pass, one pass that stores exp(x - m) in the
              output and sums it, and a scaling pass. The cross-entropy kernel computes the loss and
              the gradient in that same walk, so the probabilities are never stored separately and
              the softmax Jacobian is never formed. Sums and scales stay in the input's dtype (a
              float literal such as 0.0 would promote float32 arithmetic to float64); an "online"
              one-pass softmax (running max and rescaled sum) would need two exps per element and
              is slower on a CPU, whatever it saves on a GPU.

Why the parallel version is written as it is. Every pass is a loop over one 1-D row slice
(row = x[r]), in its own small function, and each of them vectorises (16 float32 lanes, AVX-512
here); indexing the 2-D array inside the loop is what kept the earlier loops scalar. What each
pass needed:
  * exp: Numba has no vector math library here, and a call to expf keeps a loop scalar. float32
    uses fast_exp_nonpositive (kernels/rnn/numba_cpu.py, the exp the cells' sigma uses too):
    branch-free, no libm call, within 1e-7 relative of the exact exp for every float32 argument
    <= 0 (every one checked: 7.7e-8 at worst), 0 where the result would be a denormal. float64
    keeps np.exp. Every argument here is x - m <= 0.
  * max: Python's max() compiles to a compare-and-select that LLVM vectorises only under
    function-wide no-NaNs, so the loop stayed scalar; _maximum (llvm.maximum) propagates NaN as
    np.max does and is associative, so it vectorises with no fastmath at all and the result is
    the same bits in any order.
  * sum: reassoc on that one loop, which lets LLVM keep partial sums in lanes; safe because the
    terms are all positive (see the comment above _exp_shifted_into).
Measured on the 2-core CI machine (AMD EPYC with AVX-512), logits 480 x 1000 float32, cross-
entropy forward + backward, one kernel call in a warm loop: 337 us with np.exp in the loops,
~230 us with the vector exp and max (the exp pass alone over the 480k elements: 175 -> ~120
us, the max pass ~80 us, bound by reading the logits from L3). In benchmarks/bench_kernels.py
("softmax+CE 480x1000 fwd+bwd": each call after a 0.3 s pause, where the caches and the
sleeping second thread are cold), three runs: 0.54-0.57 ms against torch's 1.60-1.87 ms in
the same runs, 0.30-0.34x torch (median 0.32x; other runs 0.27-0.39x); before, 1.50 ms against
1.26 ms, 1.19x (2.66x in benchmarks/RESULTS.md, an earlier run). Two threads gain
little at this size: with OMP_WAIT_POLICY=PASSIVE (kernels/__init__.py) waking the sleeping
thread on this virtual machine costs about as much as the half of the rows it would take.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from minirad.kernels.rnn.numba_cpu import fast_exp_nonpositive
from minirad.kernels.softmax.rows import as_rows, from_rows

# ----------------------------------------------------------------------------------------------
# naive
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _softmax_rows_naive(x, out, log):
    for r in range(x.shape[0]):
        m = -np.inf
        for j in range(x.shape[1]):
            m = max(m, x[r, j])
        total = 0.0
        for j in range(x.shape[1]):
            total += np.exp(x[r, j] - m)
        for j in range(x.shape[1]):
            if log:
                out[r, j] = x[r, j] - m - np.log(total)
            else:
                out[r, j] = np.exp(x[r, j] - m) / total


@njit(cache=True)
def _softmax_backward_rows_naive(dy, y, out, log):
    for r in range(y.shape[0]):
        total = 0.0
        for j in range(y.shape[1]):
            total += dy[r, j] if log else dy[r, j] * y[r, j]
        for j in range(y.shape[1]):
            if log:
                out[r, j] = dy[r, j] - np.exp(y[r, j]) * total
            else:
                out[r, j] = y[r, j] * (dy[r, j] - total)


@njit(cache=True)
def _cross_entropy_naive(logits, targets, ignore_index, dlogits, row_loss):
    N, V = logits.shape
    kept = 0
    for n in range(N):
        if targets[n] != ignore_index:
            kept += 1
    for n in range(N):
        for j in range(V):
            dlogits[n, j] = 0.0
        row_loss[n] = 0.0
        if targets[n] == ignore_index:
            continue
        m = -np.inf
        for j in range(V):
            m = max(m, logits[n, j])
        total = 0.0
        for j in range(V):
            total += np.exp(logits[n, j] - m)
        row_loss[n] = m + np.log(total) - logits[n, targets[n]]
        for j in range(V):
            dlogits[n, j] = np.exp(logits[n, j] - m) / total / kept
        dlogits[n, targets[n]] -= 1.0 / kept
    return kept


# ----------------------------------------------------------------------------------------------
# parallel: rows over the cores, exp once per element
# ----------------------------------------------------------------------------------------------


@intrinsic
def _maximum(typingctx, a, b):
    """max(a, b) as LLVM's llvm.maximum: NaN if either is NaN (as np.max), -0.0 < +0.0. That
    makes it associative and commutative, so a loop of them may be regrouped freely - LLVM
    vectorises the reduction without any fastmath flag, and every grouping gives the same bits.
    (Python's max(), as Numba compiles it, is a compare-and-select that LLVM only vectorises
    under function-wide no-NaNs, and it ignores a NaN.)"""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maximum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)

    return a(a, b), codegen


@njit(cache=True, error_model="numpy")
def _row_max(row):
    m = row[0]
    for j in range(1, row.shape[0]):
        m = _maximum(m, row[j])
    return m


# reassoc, the only flag and on this loop only, lets LLVM keep 16 partial sums in a vector
# register (vectorising the loop) instead of one chain of scalar adds. Safe: the terms summed are
# all exp(x - m) in [0, 1] with at least one equal to 1 - no cancellation - so the rounding error
# of any order is within (L - 1) eps of the sum (partial sums, if anything, do better than the
# sequential order); float64 results move in their last bits, far inside the tests' 1e-10. The
# exp is compiled on its own (fast_exp_nonpositive, with FMA contraction only): the flag does not
# reach its range reduction, whose split constants reassociation could merge.
@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _exp_shifted_into(row, m, out_row):
    """out_row = exp(row - m), every argument <= 0 (m is the row's maximum); returns its sum
    (accumulated in row's dtype)."""
    total = row.dtype.type(0)
    for j in range(row.shape[0]):
        e = fast_exp_nonpositive(row[j] - m)
        out_row[j] = e
        total += e
    return total


@njit(cache=True, error_model="numpy")
def _scale(row, scale):
    for j in range(row.shape[0]):
        row[j] *= scale


@njit(cache=True, error_model="numpy")
def _shift_into(row, shift, out_row):
    for j in range(row.shape[0]):
        out_row[j] = row[j] - shift


@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_rows_parallel(x, out, log):
    one = x.dtype.type(1)
    for r in prange(x.shape[0]):
        row, out_row = x[r], out[r]
        m = _row_max(row)
        total = _exp_shifted_into(row, m, out_row)  # log_softmax only needs the sum
        if log:
            _shift_into(row, m + np.log(total), out_row)
        else:
            _scale(out_row, one / total)


@njit(cache=True, parallel=True)
def _softmax_backward_rows_parallel(dy, y, out, log):
    zero = y.dtype.type(0)
    for r in prange(y.shape[0]):
        total = zero
        for j in range(y.shape[1]):
            total += dy[r, j] if log else dy[r, j] * y[r, j]
        for j in range(y.shape[1]):
            if log:
                out[r, j] = dy[r, j] - np.exp(y[r, j]) * total
            else:
                out[r, j] = y[r, j] * (dy[r, j] - total)


@njit(cache=True, parallel=True, error_model="numpy")
def _cross_entropy_parallel(logits, targets, ignore_index, dlogits, row_loss):
    N, V = logits.shape
    kept = 0
    for n in range(N):
        if targets[n] != ignore_index:
            kept += 1
    zero, one = logits.dtype.type(0), logits.dtype.type(1)
    M = logits.dtype.type(kept)  # an int M would promote to float64
    for n in prange(N):
        row, grad = logits[n], dlogits[n]
        if targets[n] == ignore_index or kept == 0:
            grad[:] = zero
            row_loss[n] = 0.0
            continue
        m = _row_max(row)
        total = _exp_shifted_into(row, m, grad)  # grad = exp(x - m)
        row_loss[n] = m + np.log(total) - row[targets[n]]
        _scale(grad, one / (total * M))  # softmax / M
        grad[targets[n]] -= one / M
    return kept


# ----------------------------------------------------------------------------------------------
# Python-level entry points (shared by both versions: only the row kernels differ)
# ----------------------------------------------------------------------------------------------


def _softmax(rows_kernel, x, axis, log):
    rows = as_rows(np, x, axis)
    out = np.empty_like(rows)
    rows_kernel(rows, out, log)
    return from_rows(np, out, x, axis)


def _softmax_backward(rows_kernel, dy, y, axis, log):
    y_rows = as_rows(np, y, axis)
    out = np.empty_like(y_rows)
    rows_kernel(as_rows(np, dy, axis), y_rows, out, log)
    return from_rows(np, out, y, axis)


def _cross_entropy(kernel, logits, targets, ignore_index):
    logits = np.ascontiguousarray(logits)
    dlogits = np.empty_like(logits)
    row_loss = np.empty(logits.shape[0], dtype=np.float64)
    kept = kernel(
        logits, np.ascontiguousarray(targets, dtype=np.int64), ignore_index, dlogits, row_loss
    )
    loss = row_loss.sum() / kept if kept else 0.0
    return np.asarray(loss, dtype=logits.dtype), dlogits


# Below this many elements the parallel version runs the naive (serial) kernels: waking the
# thread pool costs more than the work. Measured on the 2-core machine, float32 log_softmax:
# (1, 205) 47 us parallel against 2 us serial, (32, 205) 79 against 48, (32, 1024) 144 against
# 236, (480, 1000) 1,123 against 2,469: the crossing lies between 6,560 and 32,768 elements.
# A greedy decoding step's (B, 205) log-softmax is the call this is for.
PARALLEL_FROM = 16_384


def _by_size(parallel_kernel, serial_kernel):
    """A row kernel that runs `serial_kernel` on fewer than PARALLEL_FROM elements (its first
    argument's size) and `parallel_kernel` on more."""

    def kernel(x, *args):
        if x.size < PARALLEL_FROM:
            return serial_kernel(x, *args)
        return parallel_kernel(x, *args)

    return kernel


def _version(rows, backward_rows, cross_entropy):
    return {
        "softmax": lambda x, axis: _softmax(rows, x, axis, False),
        "softmax_backward": lambda dy, y, axis: _softmax_backward(
            backward_rows, dy, y, axis, False
        ),
        "log_softmax": lambda x, axis: _softmax(rows, x, axis, True),
        "log_softmax_backward": lambda dy, y, axis: _softmax_backward(
            backward_rows, dy, y, axis, True
        ),
        "softmax_cross_entropy": lambda logits, targets, ignore_index: _cross_entropy(
            cross_entropy, logits, targets, ignore_index
        ),
    }


VERSIONS = {
    "naive": _version(_softmax_rows_naive, _softmax_backward_rows_naive, _cross_entropy_naive),
    "parallel": _version(
        _by_size(_softmax_rows_parallel, _softmax_rows_naive),
        _by_size(_softmax_backward_rows_parallel, _softmax_backward_rows_naive),
        _by_size(_cross_entropy_parallel, _cross_entropy_naive),
    ),
}
DEFAULT_VERSION = "parallel"
