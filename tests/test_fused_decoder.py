"""The fast path of the report model equals the node-by-node path it replaces.

ReportModel.fused (the default) runs the attention step as one Function and, in training with
an LSTM, the whole teacher-forced decoder as one (minirad/models/fused_decoder.py). These tests
hold it to ReportModel.fused = False, the step-by-step loop a learner reads first: the same
loss and the same gradient of every parameter in float64 (to rounding), with dropout on, with
either finding input and with the word loss let through to the encoder or not; the same words
when decoding. The Function itself is checked against central finite differences, the alphas'
gradient included (the model discards the alphas; a caller that penalises them must be right).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness import assert_all_close, numerical_vjp
from minirad import nn
from minirad.autograd import Tensor
from minirad.models.fused_decoder import teacher_forced_decoder
from minirad.models.report_model import ReportModel, ReportModelConfig, report_loss
from minirad.report.decoding import beam_search, greedy

TINY = ReportModelConfig(
    vocab_size=12, image_size=32, channels=(2, 3), convs_per_block=(1, 1), summary_size=5,
    embed_dim=3, hidden_size=4, attention_dim=3, max_len=8, dropout=0.3,
)  # fmt: skip


def batch(config: ReportModelConfig, n: int = 3, T: int = 6, seed: int = 1):
    """images (n, 1, S, S), tokens (n, T) with padding after EOS, findings (n, K)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, config.image_size, config.image_size))
    tokens = rng.integers(4, config.vocab_size, (n, T))
    tokens[:, 0] = 1  # BOS
    for row, length in enumerate(rng.integers(3, T + 1, n)):
        tokens[row, length - 1], tokens[row, length:] = 2, 0  # EOS, then PAD
    findings = (rng.random((n, config.num_findings)) < 0.4).astype(np.float64)
    return images, tokens, findings


def loss_and_gradients(model: ReportModel, fused: bool, data, learns_from_words: bool):
    """The joint loss and {parameter name: gradient} of one training-mode step."""
    images, tokens, findings = data
    model.fused = fused
    model.train()
    model.dropout.rng = np.random.default_rng(7)  # both paths draw the same masks
    for p in model.parameters():
        p.grad = None
    word_logits, finding_logits = model(Tensor(images), tokens, findings, learns_from_words)
    loss = report_loss(word_logits, finding_logits, tokens[:, 1:], findings)[0]
    loss.backward()
    return loss.item(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("finding_input", ["decisions", "probabilities"])
@pytest.mark.parametrize("learns_from_words", [False, True])
def test_the_fused_decoder_trains_exactly_like_the_step_by_step_one(
    finding_input, learns_from_words
):
    config = dataclasses.replace(TINY, finding_input=finding_input)
    model, data = ReportModel(config, rng=0, dtype=np.float64), batch(config)
    loss_fused, grads_fused = loss_and_gradients(model, True, data, learns_from_words)
    loss_plain, grads_plain = loss_and_gradients(model, False, data, learns_from_words)
    assert loss_fused == pytest.approx(loss_plain, rel=1e-13)
    names = sorted(grads_plain)
    assert sorted(grads_fused) == names
    missing = [name for name in names if grads_plain[name] is None]
    assert [name for name in names if grads_fused[name] is None] == missing
    kept = [name for name in names if name not in missing]
    assert_all_close(
        [grads_fused[n] for n in kept], [grads_plain[n] for n in kept], kept, (1e-11, 1e-12),
        f"fused against step by step ({finding_input}, learns from words {learns_from_words})",
    )  # fmt: skip


def test_the_fused_path_in_float32_stays_within_float32_rounding():
    """The fused attention uses the cells' float32 tanh (kernels/rnn/numba_cpu.py fast_tanh);
    the loss moves by rounding only."""
    model, data = ReportModel(TINY, rng=0, dtype=np.float32), batch(TINY)
    data = (data[0].astype(np.float32), data[1], data[2].astype(np.float32))
    loss_fused, grads_fused = loss_and_gradients(model, True, data, False)
    loss_plain, grads_plain = loss_and_gradients(model, False, data, False)
    assert loss_fused == pytest.approx(loss_plain, rel=1e-5)
    names = [n for n in sorted(grads_plain) if grads_plain[n] is not None]
    assert_all_close(
        [grads_fused[n] for n in names], [grads_plain[n] for n in names], names, (1e-3, 1e-3),
        "fused against step by step, float32",
    )  # fmt: skip


def test_a_gru_model_keeps_the_step_by_step_loop(monkeypatch):
    """The fused Function is an LSTM decoder; a GRU model must not reach it."""
    import minirad.models.report_model as report_model

    def refuse(*args, **kwargs):
        raise AssertionError("the GRU model called the LSTM's fused decoder")

    monkeypatch.setattr(report_model, "teacher_forced_decoder", refuse)
    config = dataclasses.replace(TINY, cell="gru")
    model, data = ReportModel(config, rng=0, dtype=np.float64), batch(config)
    loss_fused, grads_fused = loss_and_gradients(model, True, data, False)
    loss_plain, _ = loss_and_gradients(model, False, data, False)
    assert loss_fused == pytest.approx(loss_plain, rel=1e-13)


def test_the_fused_decoder_is_its_finite_difference_gradient():
    """dy^T J of TeacherForcedDecoder for every input, features and alphas both weighted."""
    rng = np.random.default_rng(3)
    B, T, E, L, D, A, K, H = 2, 3, 2, 4, 3, 2, 2, 3
    attention = nn.AdditiveAttention(H, D, A, rng=rng, dtype=np.float64)
    cell = nn.LSTMCell(E + D + K, H, rng=rng, dtype=np.float64)
    inputs = [rng.standard_normal(shape) for shape in [(B, T, E), (B, L, D), (B, L, A), (B, K)]]
    inputs += [rng.standard_normal((B, H)) * 0.5, rng.standard_normal((B, H)) * 0.5]
    weights = [
        attention.query_proj.weight, attention.score.weight,
        cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
    ]  # fmt: skip
    weight_values = [np.asarray(w.data, np.float64) for w in weights]
    dfeatures, dalphas = rng.standard_normal((B, T, H + D)), rng.standard_normal((B, T, L))

    def forward(*arrays):
        for w, value in zip(weights, arrays[6:], strict=True):
            w.data = value
        tensors = [Tensor(a, requires_grad=True) for a in arrays[:6]]
        features, alphas = teacher_forced_decoder(*tensors, attention, cell)
        return features.data, alphas.data

    all_inputs = [*inputs, *weight_values]
    expected = numerical_vjp(forward, all_inputs, (dfeatures, dalphas))

    for w, value in zip(weights, weight_values, strict=True):
        w.data, w.grad = value, None
    tensors = [Tensor(a, requires_grad=True) for a in inputs]
    features, alphas = teacher_forced_decoder(*tensors, attention, cell)
    ((features * Tensor(dfeatures)).sum() + (alphas * Tensor(dalphas)).sum()).backward()
    got = [t.grad for t in tensors] + [w.grad for w in weights]
    names = ["word_vectors", "keys", "projected_keys", "findings", "h0", "c0"]
    names += ["w_query", "w_score", "w_ih", "w_hh", "b_ih", "b_hh"]
    assert_all_close(got, expected, names, (1e-6, 1.0), "teacher_forced_decoder gradcheck")


def test_dropout_per_step_draws_the_masks_of_one_call_per_step():
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    per_call = nn.Dropout(0.4, rng=11)
    expected = [per_call(Tensor(x[:, t])).data for t in range(x.shape[1])]
    at_once = nn.Dropout(0.4, rng=11).forward_per_step(Tensor(x), axis=1).data
    np.testing.assert_array_equal(at_once, np.stack(expected, axis=1))
    assert (at_once == 0).any() and (at_once != 0).any()


def test_dropout_per_step_is_the_identity_in_eval_mode():
    dropout = nn.Dropout(0.4, rng=11)
    dropout.eval()
    x = Tensor(np.ones((2, 3, 4)))
    assert dropout.forward_per_step(x) is x


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_decoding_writes_the_same_words_fused_or_not(dtype):
    model = ReportModel(TINY, rng=0, dtype=dtype)
    model.eval()
    images = Tensor(batch(TINY, n=4)[0].astype(dtype))
    runs = {}
    for fused in (True, False):
        model.fused = fused
        encoded = model.encode(images)
        runs[fused] = (
            greedy(model, encoded, max_len=TINY.max_len),
            beam_search(model, encoded, max_len=TINY.max_len, width=3),
        )
    for decoded_fused, decoded_plain in zip(runs[True], runs[False], strict=True):
        assert [d.tokens for d in decoded_fused] == [d.tokens for d in decoded_plain]
        tol = 1e-12 if dtype == np.float64 else 1e-4
        for a, b in zip(decoded_fused, decoded_plain, strict=True):
            assert a.log_prob == pytest.approx(b.log_prob, rel=tol, abs=tol)
