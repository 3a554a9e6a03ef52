"""Differentiable operations on the kernels: each is one Function, a forward and a backward.

Every Function here calls exactly one forward and one backward of the active kernels backend
(`minirad.backend.active()`), so the engine knows nothing of how a convolution is computed:
switching the backend switches every layer at once. Each call remembers the backend that ran its
forward, and its backward runs on the same one: a switch between a forward and its backward
pass does not mix two backends in one gradient (nor hand one backend's cache to another). Shapes
are the kernel contract's
(kernels/_ops.py): images NCHW, conv weight (K, C, R, S), linear weight (out, in), cells in
PyTorch's layout and gate order.
"""

from __future__ import annotations

import numpy as np

from minirad import backend
from minirad.autograd import Function, Tensor, array_module, like
from minirad.kernels._check import class_ids


class KernelFunction(Function):
    """A Function computed by the kernels: `self.kernels` is the backend active at its forward.

    Function.apply creates the Function just before calling its forward, so the backend is
    read here once; backward uses `self.kernels` too, whatever is active by then.
    """

    def __init__(self) -> None:
        super().__init__()
        self.kernels = backend.active()


class Conv2d(KernelFunction):
    def forward(self, x, w, b, stride=1, padding=0):
        self.x, self.w, self.stride, self.padding = x, w, stride, padding
        return self.kernels.conv2d_forward(x, w, b, stride, padding)

    def backward(self, dy):
        return self.kernels.conv2d_backward(dy, self.x, self.w, self.stride, self.padding)


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """y (N, K, P, Q) = x (N, C, H, W) convolved with w (K, C, R, S), plus b (K,)."""
    return Conv2d.apply(x, w, b, stride=stride, padding=padding)


class MaxPool2d(KernelFunction):
    def forward(self, x, kernel=2, stride=None, padding=0):
        self.x_shape, self.hyper = x.shape, (kernel, stride, padding)
        y, self.argmax = self.kernels.maxpool2d_forward(x, kernel, stride, padding)
        return y

    def backward(self, dy):
        return self.kernels.maxpool2d_backward(dy, self.argmax, self.x_shape, *self.hyper)


def max_pool2d(x: Tensor, kernel_size=2, stride=None, padding=0) -> Tensor:
    """y (N, C, P, Q): the maximum of each kernel_size window of x (N, C, H, W)."""
    return MaxPool2d.apply(x, kernel=kernel_size, stride=stride, padding=padding)


class Linear(KernelFunction):
    def forward(self, x, w, b):
        self.x, self.w = x, w
        return self.kernels.linear_forward(x, w, b)

    def backward(self, dy):
        return self.kernels.linear_backward(dy, self.x, self.w)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """y = x @ w.T + b for x of shape (N, in) or (..., in); w (out, in), b (out,)."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    y = Linear.apply(flat, w, b)
    return y.reshape(*lead, w.shape[0]) if x.ndim != 2 else y


class RNNTanhCell(KernelFunction):
    def forward(self, x, h, w_ih, w_hh, b_ih, b_hh):
        self.saved = (x, h, w_ih, w_hh)
        self.h_new = self.kernels.rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
        return self.h_new

    def backward(self, dh_new):
        return self.kernels.rnn_tanh_cell_backward(dh_new, *self.saved, self.h_new)


class LSTMCell(KernelFunction):
    def forward(self, x, h, c, w_ih, w_hh, b_ih, b_hh):
        h_new, c_new, self.cache = self.kernels.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
        return h_new, c_new

    def backward(self, dh_new, dc_new):
        return self.kernels.lstm_cell_backward(dh_new, dc_new, self.cache)


class GRUCell(KernelFunction):
    def forward(self, x, h, w_ih, w_hh, b_ih, b_hh):
        h_new, self.cache = self.kernels.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
        return h_new

    def backward(self, dh_new):
        return self.kernels.gru_cell_backward(dh_new, self.cache)


class LSTMSequence(KernelFunction):
    """An LSTM over a whole sequence as one Function (kernels/lstm_sequence): what T LSTMCell
    Functions compute, with the products that do not carry the recurrence (x w_ih^T and the
    weight gradients) taken once over all T*B rows instead of once per step."""

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        hs, h_n, c_n, self.cache = self.kernels.lstm_sequence_forward(
            x, h0, c0, w_ih, w_hh, b_ih, b_hh
        )
        return hs, h_n, c_n

    def backward(self, dhs, dh_n, dc_n):
        # dx, the largest product of the backward, only when the input asks for a gradient: an
        # embedding's output does, a constant input (data, a frozen encoder's features) does not.
        need_dx = self.inputs[0].requires_grad
        return self.kernels.lstm_sequence_backward(dhs, dh_n, dc_n, self.cache, need_dx)


def rnn_tanh_cell(x, h, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    return RNNTanhCell.apply(x, h, w_ih, w_hh, b_ih, b_hh)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Tensor]:
    return LSTMCell.apply(x, h, c, w_ih, w_hh, b_ih, b_hh)


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    return GRUCell.apply(x, h, w_ih, w_hh, b_ih, b_hh)


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Tensor, Tensor]:
    """hs (T, B, H) every step's h, h_n, c_n (B, H) the last state = an LSTM over x (T, B, I)
    from the state h0, c0 (B, H); weights in PyTorch's layout, w_ih (4H, I), w_hh (4H, H),
    b_ih, b_hh (4H,) (kernels/lstm_sequence/reference.py has the derivation)."""
    return LSTMSequence.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)


class AdditiveAttention(KernelFunction):
    """One attention step as one Function (kernels/attention): what nn.AdditiveAttention
    computes in about eleven nodes (add, tanh, the score Linear, reshapes, softmax, product,
    sum), one forward and one backward here."""

    def forward(self, query, projected_keys, keys, w_score):
        A = w_score.shape[-1]
        self.keys, self.v = keys, w_score.reshape(A)
        context, self.alpha, self.hidden = self.kernels.additive_attention_forward(
            query, projected_keys, keys, self.v
        )
        return context, self.alpha

    def backward(self, dcontext, dalpha):
        dquery, dprojected, dkeys, dv = self.kernels.additive_attention_backward(
            dcontext, dalpha, self.alpha, self.hidden, self.keys, self.v
        )
        return dquery, dprojected, dkeys, dv.reshape(1, -1)


def additive_attention(
    query: Tensor, projected_keys: Tensor, keys: Tensor, w_score: Tensor
) -> tuple[Tensor, Tensor]:
    """context (B, D), alpha (B, L) = attention(query (B, A), projected_keys (B, L, A),
    keys (B, L, D), w_score (1, A)): alpha = softmax_l(w_score . tanh(projected_keys + query)),
    context = sum_l alpha_l keys_l (kernels/attention/reference.py has the derivation)."""
    return AdditiveAttention.apply(query, projected_keys, keys, w_score)


class Softmax(KernelFunction):
    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = self.kernels.softmax(x, axis)
        return self.y

    def backward(self, dy):
        return self.kernels.softmax_backward(dy, self.y, self.axis)


class LogSoftmax(KernelFunction):
    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = self.kernels.log_softmax(x, axis)
        return self.y

    def backward(self, dy):
        return self.kernels.log_softmax_backward(dy, self.y, self.axis)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=axis)


class SoftmaxCrossEntropy(KernelFunction):
    """The fused kernel returns the loss and its gradient together; backward scales it."""

    def forward(self, logits, targets, ignore_index=-100):
        loss, self.dlogits = self.kernels.softmax_cross_entropy(logits, targets, ignore_index)
        return loss

    def backward(self, dloss):
        return self.dlogits * dloss, None  # targets are integers: no gradient


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of logits (N, V) (or (..., V)) against integer targets (N,) (or (...))."""
    V = logits.shape[-1]
    flat = logits.reshape(-1, V) if logits.ndim != 2 else logits
    target_data = targets.data if isinstance(targets, Tensor) else targets
    if array_module(target_data) is np and array_module(logits.data) is not np:
        # Host targets for device logits: checked here, while on the host (free), since the
        # kernel contract does not read device targets back. Host logits: the contract checks.
        class_ids("targets", np.asarray(target_data), V, ignore_index)
    target_data = like(target_data, logits.data)
    return SoftmaxCrossEntropy.apply(
        flat, Tensor(target_data.reshape(-1)), ignore_index=ignore_index
    )


def _targets_like(targets, logits: Tensor):
    """The targets' array (given as a Tensor, an array or a list, on the host or a device) where
    the logits are: a loss on a device takes host targets too, with one upload."""
    return like(targets.data if isinstance(targets, Tensor) else targets, logits.data)


def binary_cross_entropy_with_logits(logits: Tensor, targets) -> Tensor:
    """mean(max(z, 0) - z * t + log(1 + exp(-|z|))): BCE of sigmoid(z), without overflow."""
    target_data = _targets_like(targets, logits)
    t = Tensor(target_data.astype(logits.dtype))  # float targets of the logits' dtype
    positive_part = logits.relu()
    softplus = ((-(logits.relu() + (-logits).relu())).exp() + 1.0).log()  # log(1 + exp(-|z|))
    return (positive_part - logits * t + softplus).mean()
