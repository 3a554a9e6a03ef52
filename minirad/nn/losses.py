"""Losses as Modules: CrossEntropyLoss (the fused softmax kernel) and BCEWithLogitsLoss.

Both take raw scores (logits), not probabilities: the softmax or sigmoid happens inside, where
it can be computed without overflow and its gradient simplifies (softmax(z) - onehot(t)).
Both return the mean over the examples, as a 0-d Tensor.
"""

from __future__ import annotations

from minirad import functional as F
from minirad.autograd import Tensor, array_module
from minirad.nn.module import Module


def _on_device_of(logits: Tensor, values, dtype=None):
    """values as an array on logits' device (targets may arrive as lists or host arrays)."""
    values = values.data if isinstance(values, Tensor) else values
    return array_module(logits.data).asarray(values, dtype=dtype)


class CrossEntropyLoss(Module):
    """loss = mean over kept n of -log softmax(logits[n])[targets[n]].

    forward(logits (N, V) or (..., V), targets (N,) or (...) integer class ids) -> loss ().
    Rows whose target equals ignore_index (padding after the end of a report) count neither in
    the sum nor in the number of rows averaged over, and get zero gradient.
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: Tensor, targets) -> Tensor:
        targets = _on_device_of(logits, targets)
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"targets: expected shape {logits.shape[:-1]} for logits {logits.shape}, "
                f"got {targets.shape}"
            )
        return F.cross_entropy(logits, targets, ignore_index=self.ignore_index)


class BCEWithLogitsLoss(Module):
    """loss = mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], for multi-label outputs.

    forward(logits z (...), targets t (...) in [0, 1], same shape) -> loss ().
    Computed as max(z, 0) - z t + log(1 + exp(-|z|)), which never overflows.
    """

    def forward(self, logits: Tensor, targets) -> Tensor:
        # Cast to the logits' dtype: integer or bool targets would otherwise promote a float32
        # loss (and every gradient behind it) to float64.
        targets = _on_device_of(logits, targets, dtype=logits.dtype)
        if targets.shape != logits.shape:
            raise ValueError(f"targets: expected shape {logits.shape}, got {targets.shape}")
        return F.binary_cross_entropy_with_logits(logits, Tensor(targets))
