"""Recurrent cells in CUDA C (rnn.cu): host code shared by the `cupy` and `cuda_c_cpu` backends.

Shapes:  x (B, I)   h, c, h_new, c_new (B, H)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)
         G = 1 (tanh-RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), PyTorch's layout.

Each cell step is

    gi = x @ w_ih.T,  gh = h @ w_hh.T     linear.cu's matmul (w read through strides, no copy)
    gate math -> h_new (c_new, cache)      rnn.cu's kernels (the formulas are at its top)

and its backward

    gate math in reverse -> da_x, da_h (B, G*H)                         rnn.cu
    dx = da_x @ w_ih,  dh = da_h @ w_hh,  dw_ih = da_x.T @ x,  dw_hh = da_h.T @ h   matmul
    db_ih, db_hh = column sums of da_x, da_h                            linear.cu's column_sums

Versions (see rnn.cu for what each kernel does):
    naive  matmul_naive, linear.cu's add_bias, and a chain of small elementwise kernels, one per
           intermediate array (3 to 4 launches of gate math per direction).
    fused  matmul_tiled and ONE gate kernel per cell and direction, biases folded in.
    (The GRU's backward adds the direct path dh_new * z to dh after the GEMM, in both.)

Every array handed to a kernel is C-contiguous: the kernels index flat buffers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kernels._check import GRUCache, LSTMCache
from kernels.linear.cuda_c import THREADS, add_bias, column_sums, matmul
from kernels.runtime.cuda_c_runtimes import suffix
from kernels.runtime.grids import grid_1d

SOURCE = Path(__file__).with_name("rnn.cu")
NO_TANH_GATE = -1  # for sum_activate: every gate of the range is a sigmoid
LSTM_TANH_GATE = 2  # i, f, g, o: g is the tanh gate


def _kernel(runtime, name: str, n: int):
    """rnn.cu's kernel `name`, configured for one thread per item, n items; call it with its
    arguments, like a Numba CUDA kernel[blocks, threads](...).

    The dtype of the first argument picks the _f32 or _f64 entry point; Python ints among the
    arguments are passed as C ints.
    """
    grid, block = grid_1d(n, THREADS)

    def launch(*args) -> None:
        c_args = tuple(np.int32(a) if isinstance(a, int) else a for a in args)
        entry = f"{name}_{suffix(args[0].dtype)}"
        runtime.load(SOURCE).launch(entry, grid, block, c_args)

    return launch


# The three products of a cell, each one matmul launch with the strides (in elements) that read
# the operands as the formula says: A[m, k] = A_flat[m * a_strides[0] + k * a_strides[1]].


def _times_transposed(runtime, gemm: str, a, w):
    """a @ w.T: a (M, K), w (N, K) -> (M, N). w.T[k, n] = w[n, k]: strides (1, K)."""
    (M, K), N = a.shape, w.shape[0]
    return matmul(runtime, gemm, a, w, (K, 1), (1, K), M, N, K)


def _times(runtime, gemm: str, a, w):
    """a @ w: a (M, K), w (K, N) -> (M, N)."""
    (M, K), N = a.shape, w.shape[1]
    return matmul(runtime, gemm, a, w, (K, 1), (N, 1), M, N, K)


def _transposed_times(runtime, gemm: str, a, x):
    """a.T @ x: a (K, M), x (K, N) -> (M, N). a.T[m, k] = a[k, m]: strides (1, M)."""
    (K, M), N = a.shape, x.shape[1]
    return matmul(runtime, gemm, a, x, (1, M), (N, 1), M, N, K)


def _weight_grads(runtime, gemm: str, da_x, da_h, x, h, w_ih, w_hh):
    """The matrix half of every backward -> dx, dh, dw_ih, dw_hh, db_ih, db_hh."""
    dx = _times(runtime, gemm, da_x, w_ih)
    dh = _times(runtime, gemm, da_h, w_hh)
    dw_ih = _transposed_times(runtime, gemm, da_x, x)
    dw_hh = _transposed_times(runtime, gemm, da_h, h)
    db_ih = column_sums(runtime, da_x)
    # tanh-RNN and LSTM pass one da for both sides: sum it once, return two arrays.
    db_hh = db_ih.copy() if da_h is da_x else column_sums(runtime, da_h)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def make_versions(runtime) -> dict:
    """The VERSIONS table for one runtime (CuPy on a GPU, or the CPU emulation)."""
    return {"naive": _version(runtime, "naive"), "fused": _version(runtime, "fused")}


def _version(runtime, name: str) -> dict:
    xp = runtime.xp
    fused = name == "fused"
    gemm = "tiled" if fused else "naive"

    def contiguous(*arrays):
        return tuple(xp.ascontiguousarray(a) for a in arrays)

    def empty(shape, like):
        return xp.empty(shape, dtype=like.dtype)

    def pre_activations(x, h, w_ih, w_hh, b_ih, b_hh):
        """(gi, gh) = (x @ w_ih.T, h @ w_hh.T), the biases added only by the naive version
        (the fused kernels add them as they read gi and gh)."""
        gi = _times_transposed(runtime, gemm, x, w_ih)
        gh = _times_transposed(runtime, gemm, h, w_hh)
        if not fused:
            add_bias(runtime, gi, b_ih)
            add_bias(runtime, gh, b_hh)
        return gi, gh

    def rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
        x, h, w_ih, w_hh, b_ih, b_hh = contiguous(x, h, w_ih, w_hh, b_ih, b_hh)
        B, H = h.shape
        gi, gh = pre_activations(x, h, w_ih, w_hh, b_ih, b_hh)
        h_new = empty((B, H), x)
        if fused:
            _kernel(runtime, "rnn_forward_fused", B * H)(gi, gh, b_ih, b_hh, h_new, B, H)
        else:  # row length H, all H columns, one gate (number 0) and it is a tanh
            _kernel(runtime, "sum_activate", B * H)(gi, gh, h_new, B, H, H, H, 0)
        return h_new

    def rnn_tanh_cell_backward(dh_new, x, h, w_ih, w_hh, h_new):
        dh_new, x, h, w_ih, w_hh, h_new = contiguous(dh_new, x, h, w_ih, w_hh, h_new)
        B, H = h.shape
        da = empty((B, H), x)
        _kernel(runtime, "rnn_backward", B * H)(dh_new, h_new, da, B, H)
        return _weight_grads(runtime, gemm, da, da, x, h, w_ih, w_hh)

    def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
        x, h, c, w_ih, w_hh, b_ih, b_hh = contiguous(x, h, c, w_ih, w_hh, b_ih, b_hh)
        B, H = h.shape
        gi, gh = pre_activations(x, h, w_ih, w_hh, b_ih, b_hh)
        gates = empty((B, 4 * H), x)
        c_new, tanh_c_new, h_new = empty((B, H), x), empty((B, H), x), empty((B, H), x)
        if fused:
            _kernel(runtime, "lstm_forward_fused", B * H)(
                gi, gh, b_ih, b_hh, c, gates, c_new, tanh_c_new, h_new, B, H
            )
        else:
            _kernel(runtime, "sum_activate", B * 4 * H)(
                gi, gh, gates, B, 4 * H, 4 * H, H, LSTM_TANH_GATE
            )
            _kernel(runtime, "lstm_state", B * H)(gates, c, c_new, tanh_c_new, h_new, B, H)
        return h_new, c_new, LSTMCache(x, h, c, w_ih, w_hh, gates, tanh_c_new)

    def lstm_cell_backward(dh_new, dc_new, cache: LSTMCache):
        dh_new, dc_new = contiguous(dh_new, dc_new)
        x, h, c, w_ih, w_hh, gates, tanh_c_new = contiguous(*cache)
        B, H = h.shape
        da, dc = empty((B, 4 * H), x), empty((B, H), x)
        if fused:
            _kernel(runtime, "lstm_backward_fused", B * H)(
                dh_new, dc_new, c, gates, tanh_c_new, da, dc, B, H
            )
        else:
            dc_total = empty((B, H), x)
            _kernel(runtime, "lstm_dc_total", B * H)(
                dh_new, dc_new, gates, tanh_c_new, dc_total, B, H
            )
            _kernel(runtime, "lstm_gate_grads", B * 4 * H)(
                dc_total, dh_new, c, gates, tanh_c_new, da, B, H
            )
            _kernel(runtime, "lstm_dc", B * H)(dc_total, gates, dc, B, H)
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(runtime, gemm, da, da, x, h, w_ih, w_hh)
        return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh

    def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
        x, h, w_ih, w_hh, b_ih, b_hh = contiguous(x, h, w_ih, w_hh, b_ih, b_hh)
        B, H = h.shape
        gi, gh = pre_activations(x, h, w_ih, w_hh, b_ih, b_hh)
        gates, h_new = empty((B, 3 * H), x), empty((B, H), x)
        if fused:
            hn = empty((B, H), x)
            _kernel(runtime, "gru_forward_fused", B * H)(
                gi, gh, b_ih, b_hh, h, gates, hn, h_new, B, H
            )
        else:
            # r and z (the first 2H columns) are sigmoids of gi + gh; n needs r first.
            _kernel(runtime, "sum_activate", B * 2 * H)(
                gi, gh, gates, B, 3 * H, 2 * H, H, NO_TANH_GATE
            )
            _kernel(runtime, "gru_candidate", B * H)(gi, gh, gates, B, H)
            _kernel(runtime, "gru_state", B * H)(gates, h, h_new, B, H)
            hn = xp.ascontiguousarray(gh[:, 2 * H :])  # gh already holds b_hh
        return h_new, GRUCache(x, h, w_ih, w_hh, gates, hn)

    def gru_cell_backward(dh_new, cache: GRUCache):
        (dh_new,) = contiguous(dh_new)
        x, h, w_ih, w_hh, gates, hn = contiguous(*cache)
        B, H = h.shape
        da_x, da_h = empty((B, 3 * H), x), empty((B, 3 * H), x)
        if fused:
            _kernel(runtime, "gru_backward_fused", B * H)(dh_new, h, gates, hn, da_x, da_h, B, H)
        else:
            _kernel(runtime, "gru_candidate_update_grads", B * H)(dh_new, h, gates, da_x, B, H)
            _kernel(runtime, "gru_reset_grad", B * H)(hn, gates, da_x, B, H)
            _kernel(runtime, "gru_hidden_grads", B * 3 * H)(da_x, gates, da_h, B, H)
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(
            runtime, gemm, da_x, da_h, x, h, w_ih, w_hh
        )
        _kernel(runtime, "gru_direct_path", B * H)(dh, dh_new, gates, B, H)
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh

    return {
        "rnn_tanh_cell_forward": rnn_tanh_cell_forward,
        "rnn_tanh_cell_backward": rnn_tanh_cell_backward,
        "lstm_cell_forward": lstm_cell_forward,
        "lstm_cell_backward": lstm_cell_backward,
        "gru_cell_forward": gru_cell_forward,
        "gru_cell_backward": gru_cell_backward,
    }


DEFAULT_VERSION = "fused"
