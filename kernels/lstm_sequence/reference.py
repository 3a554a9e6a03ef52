"""An LSTM over a whole sequence, forward and backward through time, NumPy reference.

Shapes: T steps, B rows of the batch, I inputs, H hidden units (kernels/__init__.py, Notation).

    x               (T, B, I)    the input of every step, x[t] at step t
    h0, c0          (B, H)       the state before step 0
    w_ih            (4H, I)      w_hh (4H, H)    b_ih, b_hh (4H,)   PyTorch's gate order i, f, g, o
    hs              (T, B, H)    every step's h; h_n, c_n (B, H) the state after the last step

The cell is kernels/rnn's lstm_cell, step after step. What changes is where the matrix products
go: a product that does not depend on the recurrence is taken once, over all T * B rows, instead
of once per step over B rows (x, hs, DA below are seen as (T*B, ...) matrices there).

Forward:
    A_x = x w_ih^T                                       (T, B, 4H)  one product for all steps
    h, c = h0, c0
    for t = 0 .. T-1:
        a = A_x[t] + b_ih + h w_hh^T + b_hh              (B, 4H)  the cell's order of additions
        i, f, o = sigma(a_i), sigma(a_f), sigma(a_o);  g = tanh(a_g)
        c = f * c + i * g;   h = o * tanh(c);   hs[t] = h
    returns (hs, h_n = h, c_n = c, cache); cache = LSTMSequenceCache (kernels/_check.py): x, the
    state each step read (h_prev, c_prev (T, B, H)), the weights, gates (T, B, 4H), tanh(c)
    (T, B, H).

Backward, given dhs (T, B, H) = dL/dhs, dh_n and dc_n (B, H) (dL/dh_n, dL/dc_n: zeros when
the loss reads only hs) and need_dx:
    dh, dc = dh_n, dc_n
    for t = T-1 .. 0:
        dh = dhs[t] + dh                      hs[t] reaches the loss directly and through step t+1
        dc_total = dc + dh * o * (1 - tanh(c_t)^2)           (c_t reaches it through h_t too)
        DA[t] = [dc_total g i (1 - i),  dc_total c_prev[t] f (1 - f),
                 dc_total i (1 - g^2),  dh tanh(c_t) o (1 - o)]          (B, 4H)  the cell's da
        dc = dc_total * f                     to the state step t read
        dh = DA[t] w_hh
    dw_ih = DA^T x,   dw_hh = DA^T h_prev,   db_ih = db_hh = sum of DA's T*B rows
    dx = DA w_ih (T, B, I) if need_dx else None
    returns (dx, dh0 = dh, dc0 = dc, dw_ih, dw_hh, db_ih, db_hh).

Why one op: run as T cell calls, a sequence costs 2T calls whose products all have B rows,
and each step's weight gradients da^T x and da^T h are products over K = B rows, small enough
that BLAS runs them far from its peak. Here only the two products that carry the recurrence,
h w_hh^T forward and DA[t] w_hh backward, stay in the loops; x w_ih^T, dw_ih, dw_hh and dx are
one large product each.

The formulas are written once, for any array module `xp` with NumPy's API: this file's version
runs them on NumPy, and the GPU backends run the same formulas on CuPy (make_versions(xp)).

Versions:
    vectorised  the only one: the formulas above, each step a few whole-array operations.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from minirad.kernels._check import LSTMSequenceCache


def sigmoid(xp: ModuleType, a):
    """1 / (1 + exp(-a)) without overflow: exp is only ever taken of -|a| (kernels/rnn's)."""
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


def gate_slices(gates):
    """One step's gates (B, 4H) -> i, f, g, o, each (B, H): views, PyTorch's order."""
    H = gates.shape[1] // 4
    return gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]


def lstm_sequence_forward(xp: ModuleType, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """-> (hs (T, B, H), h_n (B, H), c_n (B, H), cache); see the module docstring."""
    T, B, I = x.shape
    H = h0.shape[1]
    # The input's product does not depend on the recurrence: one (T*B, I) x (I, 4H) product.
    a_x = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, 4 * H)
    hs = xp.empty((T, B, H), dtype=x.dtype)
    h_prev, c_prev = xp.empty_like(hs), xp.empty_like(hs)
    gates = xp.empty((T, B, 4 * H), dtype=x.dtype)
    tanh_c = xp.empty_like(hs)
    h, c = h0, c0
    for t in range(T):
        h_prev[t], c_prev[t] = h, c
        a = a_x[t] + b_ih + h @ w_hh.T + b_hh  # (B, 4H), added in the cell's order
        gates[t, :, : 2 * H] = sigmoid(xp, a[:, : 2 * H])  # i, f
        gates[t, :, 2 * H : 3 * H] = xp.tanh(a[:, 2 * H : 3 * H])  # g
        gates[t, :, 3 * H :] = sigmoid(xp, a[:, 3 * H :])  # o
        i, f, g, o = gate_slices(gates[t])
        c = f * c + i * g
        tanh_c[t] = xp.tanh(c)
        h = o * tanh_c[t]
        hs[t] = h
    cache = LSTMSequenceCache(x, h_prev, c_prev, w_ih, w_hh, gates, tanh_c)
    return hs, h, c, cache


def lstm_sequence_backward(
    xp: ModuleType, dhs, dh_n, dc_n, cache: LSTMSequenceCache, need_dx: bool
):
    """-> (dx (T, B, I) or None, dh0, dc0 (B, H), dw_ih, dw_hh, db_ih, db_hh)."""
    x, h_prev, c_prev, w_ih, w_hh, gates, tanh_c = cache
    T, B, H = h_prev.shape
    I = x.shape[2]
    da = xp.empty_like(gates)  # (T, B, 4H): every step's gradient of the pre-activations
    dh, dc = dh_n, dc_n
    for t in range(T - 1, -1, -1):
        i, f, g, o = gate_slices(gates[t])
        tc = tanh_c[t]
        dh = dhs[t] + dh  # h_t reaches the loss directly and through step t + 1
        # c_t reaches the loss through step t + 1 (dc) and through h_t = o * tanh(c_t).
        dc_total = dc + dh * o * (1 - tc * tc)
        da[t, :, :H] = dc_total * g * i * (1 - i)  # d a_i
        da[t, :, H : 2 * H] = dc_total * c_prev[t] * f * (1 - f)  # d a_f
        da[t, :, 2 * H : 3 * H] = dc_total * i * (1 - g * g)  # d a_g
        da[t, :, 3 * H :] = dh * tc * o * (1 - o)  # d a_o
        dc = dc_total * f
        dh = da[t] @ w_hh
    # The weight gradients sum over steps and rows alike: one product over all T*B rows each.
    rows = da.reshape(T * B, 4 * H)
    dw_ih = rows.T @ x.reshape(T * B, I)
    dw_hh = rows.T @ h_prev.reshape(T * B, H)
    db = rows.sum(axis=0)
    dx = (rows @ w_ih).reshape(T, B, I) if need_dx else None
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy()


def make_versions(xp: ModuleType) -> dict:
    """The VERSIONS table of the formulas above on the array module xp."""

    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return lstm_sequence_forward(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh)

    def backward(dhs, dh_n, dc_n, cache, need_dx):
        return lstm_sequence_backward(xp, dhs, dh_n, dc_n, cache, need_dx)

    return {
        "vectorised": {
            "lstm_sequence_forward": forward,
            "lstm_sequence_backward": backward,
        }
    }


VERSIONS = make_versions(np)
DEFAULT_VERSION = "vectorised"
