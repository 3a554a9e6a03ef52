"""A whole model in minirad and in PyTorch, same weights: the same loss and the same gradients.

The model is a miniature of the report generator: a CNN encodes an image into the initial
hidden state of a recurrent decoder that reads a token sequence through an Embedding and
predicts the next token with a Linear layer over the vocabulary, scored by cross-entropy with
padding ignored. Both models are built with the same attribute names, so minirad's state_dict
loads into torch's with no renaming. In float64 the two must agree to ~1e-8 relative error
(in practice ~1e-15): any larger difference is a bug, not rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from minirad import backend, kernels, nn
from minirad.autograd import Tensor, array_module, to_host
from minirad.backend import to_device

torch = pytest.importorskip("torch")

# Every backend that runs here, the emulated GPU ones included (tiny model: ~3 s each).
BACKENDS = [
    n
    for n in ("numpy", "numba", "cupy", "cuda", "cuda_c_cpu")
    if kernels.why_unavailable(n) is None
]
PAD, V, E, H = 0, 6, 3, 4  # padding id, vocabulary, embedding and hidden sizes
TOLERANCE = 1e-8


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b|."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


class Captioner(nn.Module):
    """images (B, 1, 6, 6), tokens (B, T) -> mean cross-entropy of predicting tokens[:, 1:]."""

    def __init__(self, kind: str, rng: np.random.Generator) -> None:
        super().__init__()
        f64 = {"rng": rng, "dtype": np.float64}
        self.kind = kind
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1, **f64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * 3 * 3, H, **f64),
        )
        self.embed = nn.Embedding(V, E, padding_idx=PAD, **f64)
        self.rnn = getattr(nn, kind)(E, H, batch_first=True, **f64)
        self.decoder = nn.Linear(H, V, **f64)
        self.loss = nn.CrossEntropyLoss(ignore_index=PAD)

    def forward(self, images: Tensor, tokens) -> Tensor:
        B = images.shape[0]
        h0 = self.encoder(images).reshape(1, B, H)
        state = (
            (h0, Tensor(array_module(h0.data).zeros_like(h0.data))) if self.kind == "LSTM" else h0
        )
        output, _ = self.rnn(self.embed(tokens[:, :-1]), state)  # (B, T-1, H)
        return self.loss(self.decoder(output), tokens[:, 1:])


class TorchCaptioner(torch.nn.Module):
    """The same model in PyTorch, attribute for attribute."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.encoder = torch.nn.Sequential(
            torch.nn.Conv2d(1, 2, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(2 * 3 * 3, H),
        )
        self.embed = torch.nn.Embedding(V, E, padding_idx=PAD)
        self.rnn = getattr(torch.nn, kind)(E, H, batch_first=True)
        self.decoder = torch.nn.Linear(H, V)
        self.loss = torch.nn.CrossEntropyLoss(ignore_index=PAD)

    def forward(self, images, tokens):
        h0 = self.encoder(images).unsqueeze(0)
        state = (h0, torch.zeros_like(h0)) if self.kind == "LSTM" else h0
        output, _ = self.rnn(self.embed(tokens[:, :-1]), state)
        return self.loss(self.decoder(output).reshape(-1, V), tokens[:, 1:].reshape(-1))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("name", BACKENDS)
def test_cnn_encoder_recurrent_decoder_matches_torch(name, kind):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 1, 6, 6))
    # Sequences of different lengths padded with PAD, the second one on both sides so that the
    # padding row of the embedding is read where the loss depends on it. PAD as a target is
    # ignored; the padding row gets no gradient (torch's rules, which minirad must follow).
    tokens = np.array([[1, 4, 2, 5, PAD], [PAD, 1, 3, PAD, PAD], [1, 2, 3, 4, 5]])

    ours = Captioner(kind, rng)
    theirs = TorchCaptioner(kind).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})

    with backend.use_backend(name):
        ours.to()  # the parameters onto the backend's device (nothing to do on the CPU ones)
        loss = ours(Tensor(to_device(images)), to_device(tokens))
        loss.backward()

    expected = theirs(torch.from_numpy(images), torch.from_numpy(tokens))
    expected.backward()
    assert relative_error(to_host(loss.data), expected.detach().numpy()) < TOLERANCE
    grads = {n: p.grad.numpy() for n, p in theirs.named_parameters()}
    assert list(grads) == [n for n, _ in ours.named_parameters()]
    for parameter_name, parameter in ours.named_parameters():
        error = relative_error(to_host(parameter.grad), grads[parameter_name])
        assert error < TOLERANCE, f"{name} {kind}: d loss / d {parameter_name}: {error:.2e}"


class TorchAdditiveAttention(torch.nn.Module):
    """minirad's AdditiveAttention written in PyTorch from its docstring's formulas."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.key_proj = torch.nn.Linear(key_dim, hidden_dim)
        self.query_proj = torch.nn.Linear(query_dim, hidden_dim, bias=False)
        self.score = torch.nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, query, keys, mask):
        hidden = torch.tanh(self.key_proj(keys) + self.query_proj(query).unsqueeze(1))
        e = self.score(hidden).squeeze(2).masked_fill(~mask, -1e9)  # (B, L)
        alpha = torch.softmax(e, dim=1)
        return (alpha.unsqueeze(2) * keys).sum(dim=1), alpha


@pytest.mark.parametrize("name", BACKENDS)
def test_additive_attention_matches_torch(name):
    rng = np.random.default_rng(1)
    query, keys = rng.standard_normal((2, 3)), rng.standard_normal((2, 5, 4))
    mask = np.array([[True] * 5, [True, False, True, True, False]])
    weights = rng.standard_normal((2, 4)), rng.standard_normal((2, 5))  # L = sum of outputs*weights

    ours = nn.AdditiveAttention(3, 4, 6, rng=rng, dtype=np.float64)
    theirs = TorchAdditiveAttention(3, 4, 6).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})

    with backend.use_backend(name):
        ours.to()
        q, k = (Tensor(to_device(a), requires_grad=True) for a in (query, keys))
        context, alpha = ours(q, k, to_device(mask))
        (
            (context * Tensor(to_device(weights[0]))).sum()
            + (alpha * Tensor(to_device(weights[1]))).sum()
        ).backward()

    tq, tk = (torch.from_numpy(a).requires_grad_() for a in (query, keys))
    t_context, t_alpha = theirs(tq, tk, torch.from_numpy(mask))
    (
        (t_context * torch.from_numpy(weights[0])).sum()
        + (t_alpha * torch.from_numpy(weights[1])).sum()
    ).backward()

    pairs = {
        "context": (context.data, t_context.detach().numpy()),
        "alpha": (alpha.data, t_alpha.detach().numpy()),
        "d query": (q.grad, tq.grad.numpy()),
        "d keys": (k.grad, tk.grad.numpy()),
    }
    for (n, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        pairs[f"d {n}"] = (p.grad, tp.grad.numpy())
    for what, (a, b) in pairs.items():
        error = relative_error(to_host(a), b)
        assert error < TOLERANCE, f"{name}: {what}: relative error {error:.2e}"
