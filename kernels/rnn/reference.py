"""Recurrent cells — tanh-RNN, LSTM, GRU — one time step each, NumPy reference.

Shapes:  x (B, I)   h, c, h_new, c_new (B, H)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)
         with G = 1 (tanh-RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), stacked in
         PyTorch's order so that weights copy between the two unchanged.
         sigma(a) = 1 / (1 + exp(-a)).

tanh-RNN:   h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh)

LSTM:       [a_i, a_f, a_g, a_o] = x w_ih^T + b_ih + h w_hh^T + b_hh          (each (B, H))
            i = sigma(a_i)  f = sigma(a_f)  g = tanh(a_g)  o = sigma(a_o)
            c_new = f * c + i * g,    h_new = o * tanh(c_new)

GRU:        [gi_r, gi_z, gi_n] = x w_ih^T + b_ih,   [gh_r, gh_z, gh_n] = h w_hh^T + b_hh
            r = sigma(gi_r + gh_r)    z = sigma(gi_z + gh_z)
            n = tanh(gi_n + r * gh_n)          (r scales the hidden part only, as in PyTorch)
            h_new = (1 - z) * n + z * h

Backward of every cell has the same two halves:
  1. elementwise: from dh_new (and dc_new) to the gradient of the pre-activations, da (B, G*H),
     using  sigma' = sigma (1 - sigma)  and  tanh' = 1 - tanh^2  of the values the forward kept;
  2. three matrix products shared by all cells:
     dx = da_x w_ih,  dh = da_h w_hh (+ direct paths),  dw_ih = da_x^T x,  dw_hh = da_h^T h,
     db_ih = sum_b da_x,  db_hh = sum_b da_h
     (da_x = da_h = da except in the GRU, where r multiplies the hidden part of n).

Versions:
    vectorised  the only one: whole-batch matrix products plus vectorised gate arithmetic.
"""

from __future__ import annotations

import numpy as np

from minirad.kernels._check import GRUCache, LSTMCache


def sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)) without overflow: exp is only ever taken of -|a|."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _weight_grads(da_x, da_h, x, h, w_ih, w_hh):
    """The matrix half of every cell's backward (see the module docstring)."""
    dx = da_x @ w_ih
    dh = da_h @ w_hh
    return dx, dh, da_x.T @ x, da_h.T @ h, da_x.sum(axis=0), da_h.sum(axis=0)


# ----------------------------------------------------------------------------------------------
# tanh-RNN
# ----------------------------------------------------------------------------------------------


def rnn_tanh_cell_forward_vectorised(x, h, w_ih, w_hh, b_ih, b_hh) -> np.ndarray:
    return np.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def rnn_tanh_cell_backward_vectorised(dh_new, x, h, w_ih, w_hh, h_new):
    da = dh_new * (1 - h_new * h_new)
    return _weight_grads(da, da, x, h, w_ih, w_hh)


# ----------------------------------------------------------------------------------------------
# LSTM
# ----------------------------------------------------------------------------------------------


def lstm_cell_forward_vectorised(x, h, c, w_ih, w_hh, b_ih, b_hh):
    H = h.shape[1]
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (B, 4H)
    gates = np.empty_like(a)
    gates[:, : 2 * H] = sigmoid(a[:, : 2 * H])  # i, f
    gates[:, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])  # g
    gates[:, 3 * H :] = sigmoid(a[:, 3 * H :])  # o
    i, f, g, o = np.split(gates, 4, axis=1)
    c_new = f * c + i * g
    tanh_c_new = np.tanh(c_new)
    h_new = o * tanh_c_new
    return h_new, c_new, LSTMCache(x, h, c, w_ih, w_hh, gates, tanh_c_new)


def lstm_cell_backward_vectorised(dh_new, dc_new, cache: LSTMCache):
    x, h, c, w_ih, w_hh, gates, tanh_c_new = cache
    i, f, g, o = np.split(gates, 4, axis=1)
    # c_new reaches the loss directly (dc_new) and through h_new = o * tanh(c_new).
    dc_total = dc_new + dh_new * o * (1 - tanh_c_new * tanh_c_new)
    da = np.concatenate(
        [
            dc_total * g * i * (1 - i),  # d a_i
            dc_total * c * f * (1 - f),  # d a_f
            dc_total * i * (1 - g * g),  # d a_g
            dh_new * tanh_c_new * o * (1 - o),  # d a_o
        ],
        axis=1,
    )
    dc = dc_total * f
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(da, da, x, h, w_ih, w_hh)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------------------------
# GRU
# ----------------------------------------------------------------------------------------------


def gru_cell_forward_vectorised(x, h, w_ih, w_hh, b_ih, b_hh):
    gi_r, gi_z, gi_n = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    gh_r, gh_z, hn = np.split(h @ w_hh.T + b_hh, 3, axis=1)
    r = sigmoid(gi_r + gh_r)
    z = sigmoid(gi_z + gh_z)
    n = np.tanh(gi_n + r * hn)
    h_new = (1 - z) * n + z * h
    gates = np.concatenate([r, z, n], axis=1)
    return h_new, GRUCache(x, h, w_ih, w_hh, gates, hn)


def gru_cell_backward_vectorised(dh_new, cache: GRUCache):
    x, h, w_ih, w_hh, gates, hn = cache
    r, z, n = np.split(gates, 3, axis=1)
    da_n = dh_new * (1 - z) * (1 - n * n)  # gradient of n's pre-activation
    da_z = dh_new * (h - n) * z * (1 - z)
    da_r = da_n * hn * r * (1 - r)
    da_x = np.concatenate([da_r, da_z, da_n], axis=1)
    da_h = np.concatenate([da_r, da_z, da_n * r], axis=1)  # r scales the hidden part of n
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(da_x, da_h, x, h, w_ih, w_hh)
    dh += dh_new * z  # the direct path h -> z * h
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


VERSIONS = {
    "vectorised": {
        "rnn_tanh_cell_forward": rnn_tanh_cell_forward_vectorised,
        "rnn_tanh_cell_backward": rnn_tanh_cell_backward_vectorised,
        "lstm_cell_forward": lstm_cell_forward_vectorised,
        "lstm_cell_backward": lstm_cell_backward_vectorised,
        "gru_cell_forward": gru_cell_forward_vectorised,
        "gru_cell_backward": gru_cell_backward_vectorised,
    },
}
DEFAULT_VERSION = "vectorised"
