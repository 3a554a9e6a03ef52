"""The report model's teacher-forced LSTM decoder as one Function: the fast path of training.

ReportModel.step, called once per word, records about 17 autograd nodes per step (reshapes,
concatenations, the three Linear layers of the attention, the cell, dropout ...): 1,200 nodes
for a 72-token batch, each a Python-level record and a small kernel call. Under teacher forcing
every input word is known before the first step, so the whole recurrence can be one Function
whose forward loops over the steps and whose backward loops back over them, calling the same
kernels directly:

    forward, t = 0 .. T-1 (h_{-1}, c_{-1} = h0, c0):
        q_t              = h_{t-1} W_q^T                                 (B, A)   linear
        context_t, alpha_t, hidden_t = attention(q_t, P, keys, v)        (B, D), (B, L)
        x_t              = [word_t, context_t, f]                        (B, E + D + K)
        h_t, c_t         = LSTMCell(x_t, (h_{t-1}, c_{t-1}))             (B, H)   lstm cell
        features[:, t]   = [h_t, context_t]                              (B, H + D)
    returns features (B, T, H + D) and alphas (B, T, L).

    backward, t = T-1 .. 0, carrying dh, dc from step t+1 (zero after the last step):
        dx_t, dh_{t-1}, dc_{t-1}, dW_ih, dW_hh, db = lstm_cell_backward(
            dfeatures[:, t, :H] + dh, dc)
        dword_t = dx_t[:, :E];   df += dx_t[:, E + D:]
        dcontext_t = dx_t[:, E:E + D] + dfeatures[:, t, H:]
        dq_t, dP_t, dkeys_t, dv_t = attention_backward(dcontext_t, dalphas[:, t], ...)
        dh_{t-1} += dq_t W_q                        (the query read h_{t-1} too)
    and every weight's gradient is the sum of its steps' gradients.

What stays outside, because it does not depend on the recurrence: the embedding lookup (one
lookup for all words), dropout and the output layer on all T steps at once (one (B*T, H + D)
product instead of T small ones) and the loss. The model (ReportModel.forward) keeps the unfused
loop too, word by word with ReportModel.step: it is the one to read first, and the tests hold
this Function to it (tests/test_fused_decoder.py): the same loss and gradients, in float64 to
rounding.

Shapes: B batch, T steps, E word vectors, L positions, D key width, A attention width, K
findings, H hidden units (the report model's docstring). LSTM cells only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minirad.autograd import Tensor, array_module
from minirad.backend import small_blas
from minirad.functional import KernelFunction

# The recurrence is all small matrix products ((32, 256) against (256, 1024) and the like,
# several per step) between serial passes, so the BLAS may use two threads here where the rest
# of a training step keeps one (minirad.backend.small_blas: Numba's parallel kernels run
# between the products there, and an idle BLAS thread spinning beside them slows them down).
# Measured on the 2-core machine, one training step of the bundled model's architecture,
# alternating in one process (12 steps each, twice): 391 and 385 ms median with one thread,
# 358 and 356 ms with two; two threads faster in 21 of the 24 pairs. Wider pools are not
# measured; a product this small would gain little from them. After the last product the second
# BLAS thread must go to sleep soon, not spin beside the encoder's Numba kernels: minirad sets
# OpenBLAS's thread timeout for that (minirad/__init__.py, where it is measured).
DECODER_BLAS_THREADS = 2


@dataclass
class _Step:
    """What the backward pass needs of one forward step."""

    h_prev: Any  # (B, H), the state the query read
    alpha: Any  # (B, L)
    hidden: Any  # (B, L, A), tanh of the attention's pre-activations
    cell: Any  # the LSTMCache of the step


class TeacherForcedDecoder(KernelFunction):
    """forward(word_vectors (B, T, E), keys (B, L, D), projected_keys (B, L, A),
    findings (B, K), h0 (B, H), c0 (B, H), w_query (A, H), w_score (1, A),
    w_ih (4H, E + D + K), w_hh (4H, H), b_ih (4H,), b_hh (4H,))
        -> (features (B, T, H + D) = [h_t, context_t] per step, alphas (B, T, L))."""

    def forward(
        self, word_vectors, keys, projected_keys, findings, h0, c0,
        w_query, w_score, w_ih, w_hh, b_ih, b_hh,
    ):  # fmt: skip
        arrays = (word_vectors, keys, projected_keys, findings, h0, c0)
        weights = (w_query, w_score, w_ih, w_hh, b_ih, b_hh)
        with small_blas(DECODER_BLAS_THREADS):
            return self._forward(*arrays, *weights)

    def _forward(
        self, word_vectors, keys, projected_keys, findings, h0, c0,
        w_query, w_score, w_ih, w_hh, b_ih, b_hh,
    ):  # fmt: skip
        ops, xp = self.kernels, array_module(word_vectors)
        B, T, E = word_vectors.shape
        H, D = h0.shape[1], keys.shape[2]
        v = w_score.reshape(-1)
        self.saved = (word_vectors.shape, keys, w_query, v)
        features = xp.empty((B, T, H + D), dtype=h0.dtype)
        alphas = xp.empty((B, T, keys.shape[1]), dtype=h0.dtype)
        self.steps: list[_Step] = []
        h, c = h0, c0
        for t in range(T):
            query = ops.linear_forward(h, w_query, None)
            context, alpha, hidden = ops.additive_attention_forward(query, projected_keys, keys, v)
            x = xp.concatenate([word_vectors[:, t], context, findings], axis=1)
            h_new, c, cell = ops.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
            self.steps.append(_Step(h, alpha, hidden, cell))
            features[:, t, :H], features[:, t, H:] = h_new, context
            alphas[:, t] = alpha
            h = h_new
        return features, alphas

    def backward(self, dfeatures, dalphas):
        with small_blas(DECODER_BLAS_THREADS):
            return self._backward(dfeatures, dalphas)

    def _backward(self, dfeatures, dalphas):
        ops = self.kernels
        xp = array_module(dfeatures)
        shape, keys, w_query, v = self.saved
        E, H, D = shape[2], w_query.shape[1], keys.shape[2]
        dword_vectors = xp.empty(shape, dtype=dfeatures.dtype)
        sums: dict[str, Any] = {}  # weight (and constant input) gradients, summed over steps
        # In training the keys and the findings are constants (cut from the encoder; the true
        # findings): their gradients, T sums of (B, L, D) and (B, K) arrays, are summed only
        # where those inputs ask for one.
        wants_dkeys, wants_dfindings = self.inputs[1].requires_grad, self.inputs[3].requires_grad
        dh = dc = xp.zeros_like(self.steps[0].h_prev)
        for t in range(len(self.steps) - 1, -1, -1):
            step = self.steps[t]
            dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh = ops.lstm_cell_backward(
                dfeatures[:, t, :H] + dh, dc, step.cell
            )
            dword_vectors[:, t] = dx[:, :E]
            dcontext = dx[:, E : E + D] + dfeatures[:, t, H:]
            dquery, dprojected, dkeys, dv = ops.additive_attention_backward(
                dcontext, dalphas[:, t], step.alpha, step.hidden, keys, v
            )
            dh_query, dw_query, _ = ops.linear_backward(dquery, step.h_prev, w_query)
            dh = dh + dh_query
            if wants_dkeys:
                _add(sums, dkeys=dkeys)
            if wants_dfindings:
                _add(sums, dfindings=dx[:, E + D :])
            _add(sums, dprojected=dprojected, dw_query=dw_query, dv=dv)
            _add(sums, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)
        return (
            dword_vectors, sums.get("dkeys"), sums["dprojected"], sums.get("dfindings"), dh, dc,
            sums["dw_query"], sums["dv"].reshape(1, -1), sums["dw_ih"], sums["dw_hh"],
            sums["db_ih"], sums["db_hh"],
        )  # fmt: skip


def _add(sums: dict[str, Any], **gradients) -> None:
    """sums[name] += gradient for each named gradient (the first one is copied in)."""
    for name, gradient in gradients.items():
        if name in sums:
            sums[name] += gradient
        else:
            sums[name] = gradient.copy()


def teacher_forced_decoder(
    word_vectors: Tensor, keys: Tensor, projected_keys: Tensor, findings: Tensor,
    h0: Tensor, c0: Tensor, attention, cell,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The Function applied to a model's layers: `attention` an nn.AdditiveAttention (its
    query and score weights; the keys come projected), `cell` an nn.LSTMCell with biases."""
    return TeacherForcedDecoder.apply(
        word_vectors, keys, projected_keys, findings, h0, c0,
        attention.query_proj.weight, attention.score.weight,
        cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
    )  # fmt: skip
