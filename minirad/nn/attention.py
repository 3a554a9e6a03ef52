"""Additive (Bahdanau) attention, as in Show, Attend and Tell.

A decoder about to write the next word looks back at L feature vectors of the image (the cells
of the CNN's last feature map) and takes a weighted average of them, the weights saying where it
"looks". With keys k_{b,l} (key_dim) and the decoder's state as the query q_b (query_dim):

    e_{b,l}     = v^T tanh(W_k k_{b,l} + b_k + W_q q_b)          score of position l   (B, L)
    alpha_{b,:} = softmax_l(e_{b,:})                             where to look         (B, L)
    context_b   = sum_l alpha_{b,l} k_{b,l}                      what is seen          (B, key_dim)

W_k (hidden_dim, key_dim), W_q (hidden_dim, query_dim) and v (1, hidden_dim) are the weights of
three Linear layers. Only the key projection has a bias: a second bias on the query side would
add to the same sum, and a bias after v shifts every score equally, which softmax ignores.
"""

from __future__ import annotations

import numpy as np

from minirad import functional as F
from minirad.autograd import Tensor, array_module
from minirad.nn.layers import Linear, Seed, as_generator
from minirad.nn.module import Module

MASKED_SCORE = -1e9  # exp(-1e9 - max) is exactly 0 in float32 and float64


class AdditiveAttention(Module):
    """forward(query (B, query_dim), keys (B, L, key_dim), mask (B, L) bool or None)
        -> (context (B, key_dim), alpha (B, L)).

    mask marks the valid positions (True = may be attended to); the scores of the others are
    replaced by a large negative number before the softmax, so their weight is 0. The keys do
    not change while a caption is decoded, so a decoder may compute `project_keys(keys)` once
    and pass it as `projected_keys` at every step.
    """

    def __init__(
        self, query_dim: int, key_dim: int, hidden_dim: int, rng: Seed = None, dtype=np.float32
    ) -> None:
        super().__init__()
        rng = as_generator(rng)
        self.key_proj = Linear(key_dim, hidden_dim, rng=rng, dtype=dtype)  # W_k, b_k
        self.query_proj = Linear(query_dim, hidden_dim, bias=False, rng=rng, dtype=dtype)  # W_q
        self.score = Linear(hidden_dim, 1, bias=False, rng=rng, dtype=dtype)  # v^T

    def project_keys(self, keys: Tensor) -> Tensor:
        """W_k k + b_k for every key: (B, L, key_dim) -> (B, L, hidden_dim)."""
        return self.key_proj(keys)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        mask=None,
        projected_keys: Tensor | None = None,
        fused: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """fused: the same step as one Function (F.additive_attention: one kernel forward, one
        backward) instead of the node-by-node path below, which is the one to read first."""
        B, L, _ = keys.shape
        if query.ndim != 2 or query.shape[0] != B:
            raise ValueError(
                f"query: expected shape ({B}, query_dim) for keys of shape {keys.shape}, "
                f"got {query.shape}"
            )
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        if fused and mask is None:
            return F.additive_attention(
                self.query_proj(query), projected_keys, keys, self.score.weight
            )
        # (B, 1, hidden) broadcasts against (B, L, hidden): one query per image, L keys each.
        q = self.query_proj(query).reshape(B, 1, -1)
        e = self.score((projected_keys + q).tanh()).reshape(B, L)  # (B, L)
        if mask is not None:
            e = _mask_scores(e, mask)
        alpha = F.softmax(e, axis=-1)  # (B, L)
        context = (alpha.reshape(B, L, 1) * keys).sum(axis=1)  # (B, key_dim)
        return context, alpha


def _mask_scores(e: Tensor, mask) -> Tensor:
    """e where mask is True, MASKED_SCORE elsewhere: e * keep + (1 - keep) * MASKED_SCORE."""
    xp = array_module(e.data)
    mask = xp.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
    if mask.shape != e.shape:
        raise ValueError(f"mask: expected shape {e.shape} (batch, positions), got {mask.shape}")
    keep = mask.astype(e.dtype)
    # A product, not a sum: a masked score gets exactly zero gradient, not just a tiny one.
    return e * Tensor(keep) + Tensor((1 - keep) * MASKED_SCORE)
