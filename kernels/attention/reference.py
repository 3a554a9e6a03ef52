"""Additive (Bahdanau) attention, one decoder step, NumPy reference.

Shapes: B images, L positions (the cells of the feature grid), D key width, A the attention's
hidden width.

    query           q (B, A)        W_q h: the decoder state, projected (the caller's product)
    projected_keys  P (B, L, A)     W_k k + b_k: the keys, projected once per image
    keys            k (B, L, D)
    v               (A,)            the score vector

Forward:
    hidden[b,l,:] = tanh(P[b,l,:] + q[b,:])                        (B, L, A)
    e[b,l]        = sum_a v[a] hidden[b,l,a]                       (B, L)   the scores
    alpha[b,:]    = softmax_l(e[b,:])                              (B, L)   where to look
    context[b,:]  = sum_l alpha[b,l] k[b,l,:]                      (B, D)   what is seen
    returns (context, alpha, hidden); backward needs hidden (tanh' = 1 - tanh^2).

Backward, given dcontext (B, D) and dalpha (B, L) (None: alpha feeds nothing but the context):
    dalpha_total = dalpha + sum_d dcontext[b,d] k[b,l,d]           (B, L)
    de[b,l]      = alpha[b,l] (dalpha_total[b,l] - sum_l' alpha[b,l'] dalpha_total[b,l'])
    dpre[b,l,a]  = de[b,l] v[a] (1 - hidden[b,l,a]^2)              (B, L, A)
    dquery       = sum_l dpre                                      (B, A)
    dprojected_keys = dpre                                         (B, L, A)
    dkeys[b,l,:] = alpha[b,l] dcontext[b,:]                        (B, L, D)
    dv           = sum_{b,l} de[b,l] hidden[b,l,:]                 (A,)
    returns (dquery, dprojected_keys, dkeys, dv).

One op instead of about eleven autograd nodes (add, tanh, a Linear for v, two reshapes, softmax,
a product, a sum ...): what minirad.nn.AdditiveAttention computes node by node, and what a
decoder step calls once (minirad.functional.additive_attention).

The formulas are written once, for any array module `xp` with NumPy's API: this file's version
runs them on NumPy, and a GPU backend can run the same formulas on CuPy, with its own softmax
kernel for the softmax over positions (make_versions(xp, softmax_ops)).

Versions:
    vectorised  the only one: the formulas above, each a whole-array operation.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def attention_forward(xp: ModuleType, query, projected_keys, keys, v, softmax=None):
    """-> (context (B, D), alpha (B, L), hidden (B, L, A)); see the module docstring.

    softmax: None for the formula below, or a backend's softmax(x, axis) op (its kernel)."""
    hidden = xp.tanh(projected_keys + query[:, None, :])
    scores = hidden @ v  # (B, L)
    if softmax is None:
        shifted = xp.exp(scores - scores.max(axis=1, keepdims=True))
        alpha = shifted / shifted.sum(axis=1, keepdims=True)
    else:
        alpha = softmax(scores, 1)
    context = (alpha[:, :, None] * keys).sum(axis=1)
    return context, alpha, hidden


def attention_backward(
    xp: ModuleType, dcontext, dalpha, alpha, hidden, keys, v, softmax_backward=None
):
    """-> (dquery (B, A), dprojected_keys (B, L, A), dkeys (B, L, D), dv (A,)).

    softmax_backward: None for the formula of de below, or a backend's softmax_backward(dy, y,
    axis) op, which computes the same Jacobian product."""
    dalpha_total = (keys * dcontext[:, None, :]).sum(axis=2)  # (B, L)
    if dalpha is not None:
        dalpha_total = dalpha_total + dalpha
    if softmax_backward is None:
        de = alpha * (dalpha_total - (alpha * dalpha_total).sum(axis=1, keepdims=True))
    else:
        de = softmax_backward(dalpha_total, alpha, 1)
    dpre = de[:, :, None] * v * (1 - hidden * hidden)  # (B, L, A)
    dkeys = alpha[:, :, None] * dcontext[:, None, :]
    dv = (de[:, :, None] * hidden).sum(axis=(0, 1))
    return dpre.sum(axis=1), dpre, dkeys, dv


def make_versions(xp: ModuleType, softmax_ops: dict | None = None) -> dict:
    """The VERSIONS table of the formulas above on the array module xp.

    softmax_ops: a softmax family version ({"softmax": ..., "softmax_backward": ...}) whose
    kernels compute the softmax over positions and its backward, or None for the formulas."""
    softmax = None if softmax_ops is None else softmax_ops["softmax"]
    softmax_backward = None if softmax_ops is None else softmax_ops["softmax_backward"]

    def forward(query, projected_keys, keys, v):
        return attention_forward(xp, query, projected_keys, keys, v, softmax)

    def backward(dcontext, dalpha, alpha, hidden, keys, v):
        return attention_backward(xp, dcontext, dalpha, alpha, hidden, keys, v, softmax_backward)

    return {
        "vectorised": {
            "additive_attention_forward": forward,
            "additive_attention_backward": backward,
        }
    }


VERSIONS = make_versions(np)
DEFAULT_VERSION = "vectorised"
