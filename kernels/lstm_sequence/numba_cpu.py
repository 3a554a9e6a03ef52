"""An LSTM over a whole sequence, forward and backward through time, Numba CPU backend.

Shapes: x (T, B, I), h0, c0 (B, H), w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,); hs (T, B, H).

    A_x = x w_ih^T over all T*B rows, then for each step t: a = A_x[t] + b_ih + h w_hh^T + b_hh,
          the gates, c = f * c + i * g, h = o * tanh(c), hs[t] = h
    backward, t = T-1 .. 0: dh = dhs[t] + dh, the cell's da into DA[t], dc = dc_total * f,
          dh = DA[t] w_hh; then dw_ih = DA^T x, dw_hh = DA^T h_prev, db = sum of DA's rows,
          dx = DA w_ih where asked for
(the derivation is in reference.py).

Versions:
    fused  the default. Each step's elementwise work is the rnn family's compiled LSTM pass,
           called as it is (kernels/rnn/numba_cpu.py: _lstm_forward_pass adds the biases and the
           recurrent product and computes the gates, c and h in one vectorised pass per row;
           _lstm_backward_pass computes da, the carried dc and the bias gradient), written
           straight into the sequence's arrays: step t's gates, tanh(c) and h land in gates[t],
           tanh_c[t] and hs[t], its c in c_prev[t + 1], where step t + 1 reads it. The products
           go to BLAS through NumPy: inside the loops only the two that carry the recurrence
           (h w_hh^T, (B, H) x (H, 4H), and DA[t] w_hh, (B, 4H) x (4H, H)); x w_ih^T, dw_ih,
           dw_hh and dx are one product each over all T*B rows, and dx is skipped when the
           input needs no gradient (torch.nn.LSTM skips it too). The benchmark's row "LSTM seq
           B16 I256 H256 T30 fwd+bwd" times this op (benchmarks/bench_kernels.py).
"""

from __future__ import annotations

import numpy as np

from minirad.kernels._check import LSTMSequenceCache
from minirad.kernels.rnn.numba_cpu import _lstm_backward_pass, _lstm_forward_pass


def lstm_sequence_forward_fused(
    x: np.ndarray, h0: np.ndarray, c0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
    b_ih: np.ndarray, b_hh: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMSequenceCache]:  # fmt: skip
    T, B, I = x.shape
    H = h0.shape[1]
    x = np.ascontiguousarray(x)
    b_ih, b_hh = np.ascontiguousarray(b_ih), np.ascontiguousarray(b_hh)
    # One product for every step; a fresh C-contiguous array whose a_x[t] the pass overwrites
    # with step t's whole pre-activation.
    a_x = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, 4 * H)
    gates = np.empty_like(a_x)
    hs = np.empty((T, B, H), dtype=x.dtype)
    c_prev, tanh_c = np.empty_like(hs), np.empty_like(hs)
    c_prev[0] = c0
    c_n = np.empty((B, H), dtype=x.dtype)
    h = np.ascontiguousarray(h0)
    for t in range(T):
        a_h = h @ w_hh.T  # (B, 4H): the product that carries the recurrence
        # Step t's c is the state step t + 1 reads: written into c_prev[t + 1] directly.
        c_new = c_prev[t + 1] if t + 1 < T else c_n
        _lstm_forward_pass(a_x[t], a_h, b_ih, b_hh, c_prev[t], gates[t], c_new, tanh_c[t], hs[t])
        h = hs[t]
    h_prev = np.empty_like(hs)  # the state each step read: h0, then hs[0] .. hs[T-2]
    h_prev[0] = h0
    h_prev[1:] = hs[:-1]
    cache = LSTMSequenceCache(x, h_prev, c_prev, w_ih, w_hh, gates, tanh_c)
    return hs, hs[T - 1].copy(), c_n, cache


def lstm_sequence_backward_fused(
    dhs: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray, cache: LSTMSequenceCache, need_dx: bool
) -> tuple[np.ndarray | None, ...]:
    x, h_prev, c_prev, w_ih, w_hh, gates, tanh_c = cache
    T, B, H = h_prev.shape
    I = x.shape[2]
    dhs = np.ascontiguousarray(dhs)
    da = np.empty_like(gates)  # (T, B, 4H): every step's gradient of the pre-activations
    db = np.zeros(4 * H, dtype=gates.dtype)  # the pass adds each step's column sums into it
    dh, dc = dh_n, np.ascontiguousarray(dc_n)
    for t in range(T - 1, -1, -1):
        dh_t = dhs[t] + dh  # h_t reaches the loss directly and through step t + 1
        dc_prev = np.empty_like(dc)  # a fresh output: the pass reads dc while it writes this
        _lstm_backward_pass(dh_t, dc, c_prev[t], gates[t], tanh_c[t], da[t], dc_prev, db)
        dc = dc_prev
        dh = da[t] @ w_hh  # the product that carries the recurrence back
    # Summed over steps and rows alike: one product over all T*B rows each.
    rows = da.reshape(T * B, 4 * H)
    dw_ih = rows.T @ x.reshape(T * B, I)
    dw_hh = rows.T @ h_prev.reshape(T * B, H)
    dx = (rows @ w_ih).reshape(T, B, I) if need_dx else None
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy()


VERSIONS = {
    "fused": {
        "lstm_sequence_forward": lstm_sequence_forward_fused,
        "lstm_sequence_backward": lstm_sequence_backward_fused,
    }
}
DEFAULT_VERSION = "fused"
