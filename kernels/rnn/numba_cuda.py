"""Recurrent cells — tanh-RNN, LSTM, GRU — one time step each, in Numba CUDA.

Shapes:  x (B, I)   h, c, h_new, c_new (B, H)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)
         G = 1 (tanh-RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), PyTorch's layout.
         sigma(a) = 1 / (1 + exp(-a)); the math of every cell is in reference.py.

A cell is two matrix products and a little arithmetic per hidden unit:

    gi = x @ w_ih.T (B, G*H)      gh = h @ w_hh.T (B, G*H)         the GEMMs (kernels/linear)
    gate math on [gi + b_ih, gh + b_hh]  ->  h_new (and c_new, the cache)   elementwise

and its backward the same two halves in reverse: elementwise from dh_new (and dc_new) to the
gradients of the pre-activations da_x, da_h (B, G*H), then the products of reference.py's
`_weight_grads`: dx = da_x @ w_ih, dh = da_h @ w_hh, dw_ih = da_x.T @ x, dw_hh = da_h.T @ h
(transposed views, no copy), db_ih, db_hh = column sums of da_x, da_h.

Versions:
    naive  the GEMMs with the naive matmul. The gate math is a chain of small elementwise
           kernels, one per intermediate array of the reference (add the biases, activate the
           gates, update the state; in the backward: dc_total, then da, then dc), one thread per
           element. Every intermediate goes to global memory and comes back in the next kernel.
    fused  the GEMMs with the tiled matmul. ALL the gate math of a cell is ONE kernel per
           direction: one thread per hidden unit (b, j) reads the G pre-activations of that unit
           (columns j, H + j, 2H + j, ...), keeps every intermediate in registers and writes only
           what the cell returns or caches. The elementwise work is memory-bound, so reading
           and writing each value once (and launching once) is what makes it fast.
    (The GRU's backward needs one more small kernel in both versions: dh gets the direct path
    dh_new * z added after the GEMM dh = da_h @ w_hh has produced it.)

Elementwise kernels use a 1-D grid over the B * cols outputs (consecutive threads touch
consecutive columns: coalesced); launch geometry comes from kernels/runtime/numba_cuda.py.
Which kernels each version launches, on what, is the host code of device_host.py, shared with
the CUDA C backend; the end of this file says how a kernel is launched here.
"""

from __future__ import annotations

import math

from minirad.kernels.linear.numba_cuda import add_bias, column_sums, matmul
from minirad.kernels.rnn.device_host import CellDevice, make_versions
from minirad.kernels.runtime.numba_cuda import cuda, grid_1d, xp

numba_cuda = cuda()

# ----------------------------------------------------------------------------------------------
# Device functions. `one` is 1 in the arrays' dtype: a literal 1 is an int64 and would silently
# promote float32 arithmetic to float64.
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(device=True)
def _sigmoid(a, one):
    """1 / (1 + exp(-a)) without overflow: exp is only ever taken of -|a|. one: 1 in a's dtype."""
    e = math.exp(-abs(a))
    return one / (one + e) if a >= 0 else e / (one + e)


# ----------------------------------------------------------------------------------------------
# naive: one small kernel per intermediate array, one thread per element
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(cache=True)
def _sum_activate(gi, gh, gates, H, tanh_gate, cols):
    """gates[b, k] = act(gi[b, k] + gh[b, k]) for the first `cols` columns k of (B, G*H) arrays;
    act = tanh for gate k // H == tanh_gate, else sigma. The biases are already in gi and gh.

    (A column count rather than a view gates[:, :cols]: the simulator copies every argument as
    one memory region and refuses non-contiguous views.)
    """
    i = numba_cuda.grid(1)
    if i < gates.shape[0] * cols:
        b, k = i // cols, i % cols
        a = gi[b, k] + gh[b, k]
        one = gates.dtype.type(1)
        gates[b, k] = math.tanh(a) if k // H == tanh_gate else _sigmoid(a, one)


@numba_cuda.jit(cache=True)
def _lstm_state(gates, c, c_new, tanh_c_new, h_new):
    """c_new = f * c + i * g,  tanh_c_new = tanh(c_new),  h_new = o * tanh_c_new.   (B, H)"""
    i = numba_cuda.grid(1)
    H = c.shape[1]
    if i < c.shape[0] * H:
        b, j = i // H, i % H
        c_next = gates[b, H + j] * c[b, j] + gates[b, j] * gates[b, 2 * H + j]
        t = math.tanh(c_next)
        c_new[b, j] = c_next
        tanh_c_new[b, j] = t
        h_new[b, j] = gates[b, 3 * H + j] * t


@numba_cuda.jit(cache=True)
def _gru_candidate(gi, gh, gates):
    """n = tanh(gi_n + r * gh_n), written to gates[:, 2H:]; r scales the hidden part only."""
    i = numba_cuda.grid(1)
    H = gates.shape[1] // 3
    if i < gates.shape[0] * H:
        b, j = i // H, i % H
        gates[b, 2 * H + j] = math.tanh(gi[b, 2 * H + j] + gates[b, j] * gh[b, 2 * H + j])


@numba_cuda.jit(cache=True)
def _gru_state(gates, h, h_new):
    """h_new = (1 - z) * n + z * h.   (B, H)"""
    i = numba_cuda.grid(1)
    H = h.shape[1]
    if i < h.shape[0] * H:
        b, j = i // H, i % H
        z, n = gates[b, H + j], gates[b, 2 * H + j]
        h_new[b, j] = (gates.dtype.type(1) - z) * n + z * h[b, j]


@numba_cuda.jit(cache=True)
def _lstm_dc_total(dh_new, dc_new, gates, tanh_c_new, dc_total):
    """dc_total = dc_new + dh_new * o * (1 - tanh_c_new^2): c_new reaches the loss two ways."""
    i = numba_cuda.grid(1)
    H = dh_new.shape[1]
    if i < dh_new.shape[0] * H:
        b, j = i // H, i % H
        t = tanh_c_new[b, j]
        one = gates.dtype.type(1)
        dc_total[b, j] = dc_new[b, j] + dh_new[b, j] * gates[b, 3 * H + j] * (one - t * t)


@numba_cuda.jit(cache=True)
def _lstm_gate_grads(dc_total, dh_new, c, gates, tanh_c_new, da):
    """da (B, 4H): the gradient of each pre-activation, by the gate its column belongs to."""
    i = numba_cuda.grid(1)
    H = c.shape[1]
    if i < da.shape[0] * da.shape[1]:
        b, k = i // da.shape[1], i % da.shape[1]
        gate, j = k // H, k % H
        one = gates.dtype.type(1)
        s = gates[b, k]  # this gate's activated value
        if gate == 0:  # i: dc_total * g * sigma'
            da[b, k] = dc_total[b, j] * gates[b, 2 * H + j] * s * (one - s)
        elif gate == 1:  # f: dc_total * c * sigma'
            da[b, k] = dc_total[b, j] * c[b, j] * s * (one - s)
        elif gate == 2:  # g: dc_total * i * tanh'
            da[b, k] = dc_total[b, j] * gates[b, j] * (one - s * s)
        else:  # o: dh_new * tanh(c_new) * sigma'
            da[b, k] = dh_new[b, j] * tanh_c_new[b, j] * s * (one - s)


@numba_cuda.jit(cache=True)
def _lstm_dc(dc_total, gates, dc):
    """dc = dc_total * f: the gradient reaching the previous cell state."""
    i = numba_cuda.grid(1)
    H = dc.shape[1]
    if i < dc.shape[0] * H:
        b, j = i // H, i % H
        dc[b, j] = dc_total[b, j] * gates[b, H + j]


@numba_cuda.jit(cache=True)
def _gru_candidate_update_grads(dh_new, h, gates, da_x):
    """da_n = dh_new (1 - z)(1 - n^2) and da_z = dh_new (h - n) z (1 - z), into da_x (B, 3H)."""
    i = numba_cuda.grid(1)
    H = h.shape[1]
    if i < h.shape[0] * H:
        b, j = i // H, i % H
        z, n = gates[b, H + j], gates[b, 2 * H + j]
        one = gates.dtype.type(1)
        da_x[b, 2 * H + j] = dh_new[b, j] * (one - z) * (one - n * n)
        da_x[b, H + j] = dh_new[b, j] * (h[b, j] - n) * z * (one - z)


@numba_cuda.jit(cache=True)
def _gru_reset_grad(hn, gates, da_x):
    """da_r = da_n * hn * r (1 - r), into da_x[:, :H] (da_n is already in da_x[:, 2H:])."""
    i = numba_cuda.grid(1)
    H = hn.shape[1]
    if i < hn.shape[0] * H:
        b, j = i // H, i % H
        r = gates[b, j]
        da_x[b, j] = da_x[b, 2 * H + j] * hn[b, j] * r * (gates.dtype.type(1) - r)


@numba_cuda.jit(cache=True)
def _gru_hidden_grads(da_x, gates, da_h):
    """da_h = da_x, except the n block times r (r scales the hidden part of n).   (B, 3H)"""
    i = numba_cuda.grid(1)
    cols = da_x.shape[1]
    H = cols // 3
    if i < da_x.shape[0] * cols:
        b, k = i // cols, i % cols
        if k < 2 * H:  # r and z
            da_h[b, k] = da_x[b, k]
        else:  # n of unit j = k - 2H, scaled by that unit's r
            da_h[b, k] = da_x[b, k] * gates[b, k - 2 * H]


# ----------------------------------------------------------------------------------------------
# Kernels both versions use
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(cache=True)
def _rnn_backward(dh_new, h_new, da):
    """da = dh_new * (1 - h_new^2): the tanh-RNN's whole elementwise backward, one kernel."""
    i = numba_cuda.grid(1)
    H = da.shape[1]
    if i < da.shape[0] * H:
        b, j = i // H, i % H
        y = h_new[b, j]
        da[b, j] = dh_new[b, j] * (da.dtype.type(1) - y * y)


@numba_cuda.jit(cache=True)
def _gru_direct_path(dh, dh_new, gates):
    """dh += dh_new * z: the path h -> z * h that bypasses the GEMM dh = da_h @ w_hh."""
    i = numba_cuda.grid(1)
    H = dh.shape[1]
    if i < dh.shape[0] * H:
        b, j = i // H, i % H
        dh[b, j] += dh_new[b, j] * gates[b, H + j]


# ----------------------------------------------------------------------------------------------
# fused: all the gate math of a cell in one kernel per direction, one thread per unit (b, j)
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(cache=True)
def _rnn_forward_fused(gi, gh, b_ih, b_hh, h_new):
    """h_new = tanh(gi + b_ih + gh + b_hh).   gi, gh (B, H)"""
    i = numba_cuda.grid(1)
    H = h_new.shape[1]
    if i < h_new.shape[0] * H:
        b, j = i // H, i % H
        h_new[b, j] = math.tanh(gi[b, j] + b_ih[j] + gh[b, j] + b_hh[j])


@numba_cuda.jit(cache=True)
def _lstm_forward_fused(gi, gh, b_ih, b_hh, c, gates, c_new, tanh_c_new, h_new):
    """One LSTM unit: 4 pre-activations in, gates (B, 4H) and c_new, tanh_c_new, h_new out."""
    i = numba_cuda.grid(1)
    H = c.shape[1]
    if i < c.shape[0] * H:
        b, j = i // H, i % H
        one = gates.dtype.type(1)
        # Column of gate g for unit j is g * H + j (PyTorch stacks the gates i, f, g, o).
        i_gate = _sigmoid(gi[b, j] + b_ih[j] + gh[b, j] + b_hh[j], one)
        f_gate = _sigmoid(gi[b, H + j] + b_ih[H + j] + gh[b, H + j] + b_hh[H + j], one)
        k = 2 * H + j
        g_gate = math.tanh(gi[b, k] + b_ih[k] + gh[b, k] + b_hh[k])
        k = 3 * H + j
        o_gate = _sigmoid(gi[b, k] + b_ih[k] + gh[b, k] + b_hh[k], one)
        c_next = f_gate * c[b, j] + i_gate * g_gate
        t = math.tanh(c_next)
        gates[b, j] = i_gate
        gates[b, H + j] = f_gate
        gates[b, 2 * H + j] = g_gate
        gates[b, 3 * H + j] = o_gate
        c_new[b, j] = c_next
        tanh_c_new[b, j] = t
        h_new[b, j] = o_gate * t


@numba_cuda.jit(cache=True)
def _gru_forward_fused(gi, gh, b_ih, b_hh, h, gates, hn, h_new):
    """One GRU unit: gi, gh (B, 3H) in; gates (B, 3H), hn and h_new (B, H) out."""
    i = numba_cuda.grid(1)
    H = h.shape[1]
    if i < h.shape[0] * H:
        b, j = i // H, i % H
        one = gates.dtype.type(1)
        r = _sigmoid(gi[b, j] + b_ih[j] + gh[b, j] + b_hh[j], one)
        z = _sigmoid(gi[b, H + j] + b_ih[H + j] + gh[b, H + j] + b_hh[H + j], one)
        k = 2 * H + j
        hidden_n = gh[b, k] + b_hh[k]  # kept: the backward of r needs it
        n = math.tanh(gi[b, k] + b_ih[k] + r * hidden_n)
        gates[b, j] = r
        gates[b, H + j] = z
        gates[b, k] = n
        hn[b, j] = hidden_n
        h_new[b, j] = (one - z) * n + z * h[b, j]


@numba_cuda.jit(cache=True)
def _lstm_backward_fused(dh_new, dc_new, c, gates, tanh_c_new, da, dc):
    """One LSTM unit backward: da (B, 4H) and dc (B, H) from dh_new, dc_new and the cache."""
    i = numba_cuda.grid(1)
    H = c.shape[1]
    if i < c.shape[0] * H:
        b, j = i // H, i % H
        one = gates.dtype.type(1)
        i_gate, f_gate = gates[b, j], gates[b, H + j]
        g_gate, o_gate = gates[b, 2 * H + j], gates[b, 3 * H + j]
        t = tanh_c_new[b, j]
        # c_new reaches the loss directly (dc_new) and through h_new = o * tanh(c_new).
        dc_total = dc_new[b, j] + dh_new[b, j] * o_gate * (one - t * t)
        da[b, j] = dc_total * g_gate * i_gate * (one - i_gate)
        da[b, H + j] = dc_total * c[b, j] * f_gate * (one - f_gate)
        da[b, 2 * H + j] = dc_total * i_gate * (one - g_gate * g_gate)
        da[b, 3 * H + j] = dh_new[b, j] * t * o_gate * (one - o_gate)
        dc[b, j] = dc_total * f_gate


@numba_cuda.jit(cache=True)
def _gru_backward_fused(dh_new, h, gates, hn, da_x, da_h):
    """One GRU unit backward: da_x, da_h (B, 3H) from dh_new and the cache."""
    i = numba_cuda.grid(1)
    H = h.shape[1]
    if i < h.shape[0] * H:
        b, j = i // H, i % H
        one = gates.dtype.type(1)
        r, z, n = gates[b, j], gates[b, H + j], gates[b, 2 * H + j]
        da_n = dh_new[b, j] * (one - z) * (one - n * n)
        da_z = dh_new[b, j] * (h[b, j] - n) * z * (one - z)
        da_r = da_n * hn[b, j] * r * (one - r)
        da_x[b, j] = da_r
        da_x[b, H + j] = da_z
        da_x[b, 2 * H + j] = da_n
        da_h[b, j] = da_r
        da_h[b, H + j] = da_z
        da_h[b, 2 * H + j] = da_n * r  # r multiplies the hidden part of n only


# ----------------------------------------------------------------------------------------------
# Host code: the cells are orchestrated by device_host.py; this is how a kernel is launched here
# ----------------------------------------------------------------------------------------------

# rnn.cu's kernel names -> this file's kernels (the host code names them the same way).
_KERNELS = {
    "rnn_forward_fused": _rnn_forward_fused,
    "rnn_backward": _rnn_backward,
    "lstm_forward_fused": _lstm_forward_fused,
    "lstm_state": _lstm_state,
    "lstm_backward_fused": _lstm_backward_fused,
    "lstm_dc_total": _lstm_dc_total,
    "lstm_gate_grads": _lstm_gate_grads,
    "lstm_dc": _lstm_dc,
    "gru_forward_fused": _gru_forward_fused,
    "gru_candidate": _gru_candidate,
    "gru_state": _gru_state,
    "gru_backward_fused": _gru_backward_fused,
    "gru_candidate_update_grads": _gru_candidate_update_grads,
    "gru_reset_grad": _gru_reset_grad,
    "gru_hidden_grads": _gru_hidden_grads,
    "gru_direct_path": _gru_direct_path,
}


def _launch(kernel: str, n: int, arrays: tuple, B: int, H: int) -> None:
    """Run `kernel` on a 1-D grid of one thread per item, n items; it reads B, H off the arrays."""
    blocks, threads = grid_1d(n)
    _KERNELS[kernel][blocks, threads](*arrays)


def _launch_sum_activate(gi, gh, gates, cols: int, H: int, tanh_gate: int) -> None:
    """_sum_activate over the first `cols` columns of every row: B * cols threads."""
    blocks, threads = grid_1d(gates.shape[0] * cols)
    _sum_activate[blocks, threads](gi, gh, gates, H, tanh_gate, cols)


DEVICE = CellDevice(xp(), matmul, add_bias, column_sums, _launch, _launch_sum_activate)
VERSIONS = make_versions(DEVICE)
DEFAULT_VERSION = "fused"
