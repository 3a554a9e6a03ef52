"""Additive (Bahdanau) attention, one decoder step, Numba CPU backend.

Shapes: query q (B, A), projected_keys P (B, L, A), keys k (B, L, D), v (A,).

    hidden = tanh(P + q[:, None, :])     e = hidden @ v     alpha = softmax_l(e)
    context = sum_l alpha[:, l, None] k[:, l, :]
    backward: de = alpha (dalpha_total - sum_l alpha dalpha_total),
              dalpha_total = dalpha + k . dcontext,   dpre = de v (1 - hidden^2),
              dquery = sum_l dpre,  dprojected_keys = dpre,  dkeys = alpha dcontext,
              dv = sum_{b,l} de hidden
(the derivation is in reference.py).

Versions:
    fused  the default. The elementwise work over (B, L, A) - the tanh forward, the gradient of
           the pre-activations and its sum over positions backward - is one compiled pass each,
           row by row, with the vectorisable float32 tanh of the recurrent cells (fast_tanh:
           kernels/rnn/numba_cpu.py, where its accuracy is measured); the products with v and
           with the keys go to BLAS through NumPy; the softmax over L is the serial row kernel of
           kernels/softmax. Why serial, no prange: at the report model's shapes (32 x 64 x 64) a
           pass takes tens of microseconds, and waking a thread pool costs about as much (a
           parallel softmax of a 32 x 64 block took 60 us, a serial one 9 us). NumPy's own
           float32 tanh took 420 us for the same 131 072 values: it is the whole reason for
           this file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from minirad.kernels.rnn.numba_cpu import fast_tanh
from minirad.kernels.softmax.numba_cpu import _softmax_rows_naive

FUSED: dict[str, Any] = dict(cache=True, error_model="numpy")


@njit(**FUSED)
def _hidden_pass(query, projected_keys, hidden):
    """hidden[b, l, :] = tanh(projected_keys[b, l, :] + query[b, :]), one 1-D row at a time
    (1-D slices let LLVM vectorise the inner loop; see kernels/rnn/numba_cpu.py)."""
    B, L, A = projected_keys.shape
    for b in range(B):
        q = query[b]
        for position in range(L):
            p, out = projected_keys[b, position], hidden[b, position]
            for a in range(A):
                out[a] = fast_tanh(p[a] + q[a])


@njit(**FUSED)
def _score_grads_pass(dalpha_total, alpha, de):
    """de[b, :] = alpha[b, :] (dalpha_total[b, :] - sum_l alpha[b, l] dalpha_total[b, l])."""
    B, L = alpha.shape
    for b in range(B):
        total = alpha.dtype.type(0)
        for position in range(L):
            total += alpha[b, position] * dalpha_total[b, position]
        for position in range(L):
            de[b, position] = alpha[b, position] * (dalpha_total[b, position] - total)


@njit(**FUSED)
def _pre_grads_pass(de, hidden, v, dpre, dquery):
    """dpre[b, l, :] = de[b, l] v (1 - hidden[b, l, :]^2) and dquery[b, :] = sum_l dpre[b, l, :]."""
    B, L, A = hidden.shape
    one = hidden.dtype.type(1)
    for b in range(B):
        dq = dquery[b]
        dq[:] = 0
        for position in range(L):
            h, out, scale = hidden[b, position], dpre[b, position], de[b, position]
            for a in range(A):
                out[a] = scale * v[a] * (one - h[a] * h[a])
                dq[a] += out[a]


@njit(**FUSED)
def _key_grads_pass(alpha, dcontext, dkeys):
    """dkeys[b, l, :] = alpha[b, l] dcontext[b, :]."""
    B, L, D = dkeys.shape
    for b in range(B):
        dc = dcontext[b]
        for position in range(L):
            out, weight = dkeys[b, position], alpha[b, position]
            for d in range(D):
                out[d] = weight * dc[d]


def attention_forward_fused(query, projected_keys, keys, v):
    query, projected_keys = np.ascontiguousarray(query), np.ascontiguousarray(projected_keys)
    B, L, A = projected_keys.shape
    hidden = np.empty_like(projected_keys)
    _hidden_pass(query, projected_keys, hidden)
    scores = (hidden.reshape(B * L, A) @ v).reshape(B, L)
    alpha = np.empty_like(scores)
    _softmax_rows_naive(scores, alpha, False)
    context = np.matmul(alpha[:, None, :], keys)[:, 0, :]  # (B, 1, L) @ (B, L, D)
    return context, alpha, hidden


def attention_backward_fused(dcontext, dalpha, alpha, hidden, keys, v):
    dcontext, alpha = np.ascontiguousarray(dcontext), np.ascontiguousarray(alpha)
    B, L, A = hidden.shape
    dalpha_total = np.matmul(keys, dcontext[:, :, None])[:, :, 0]  # (B, L, D) @ (B, D, 1)
    if dalpha is not None:
        dalpha_total += dalpha
    de = np.empty_like(alpha)
    _score_grads_pass(dalpha_total, alpha, de)
    dpre, dquery = np.empty_like(hidden), np.empty((B, A), dtype=hidden.dtype)
    _pre_grads_pass(de, np.ascontiguousarray(hidden), np.ascontiguousarray(v), dpre, dquery)
    dkeys = np.empty(keys.shape, dtype=keys.dtype)
    _key_grads_pass(alpha, dcontext, dkeys)
    dv = de.reshape(B * L) @ hidden.reshape(B * L, A)
    return dquery, dpre, dkeys, dv


VERSIONS = {
    "fused": {
        "additive_attention_forward": attention_forward_fused,
        "additive_attention_backward": attention_backward_fused,
    }
}
DEFAULT_VERSION = "fused"
