"""The layer library: PyTorch's names and shapes, behaviour, checkpoints, whole-model gradchecks.

The gradchecks run in float64 on every CPU backend: a model's gradient is right only if every
Function's backward is right and the tape joins them correctly (shared parameters, many time
steps, ignored targets). Sizes are tiny because a gradcheck runs two forwards per element.
"""

from __future__ import annotations

import numpy as np
import pytest

from minirad import backend, kernels, nn
from minirad import functional as F
from minirad.autograd import Tensor, concatenate, gradcheck, stack, topological_order
from minirad.nn import checkpoint
from minirad.optim import SGD

CPU_BACKENDS = [name for name in ("numpy", "numba") if kernels.why_unavailable(name) is None]
PAD = -100  # cross_entropy's default ignore_index

# gradcheck measures max|numeric - analytic| / max(max|numeric|, 1): relative only for gradients
# above 1. A mean loss of a tiny model has gradients of 1e-3..1e-1, where that measure would be
# an absolute one and let a 1% error pass; scaling the checked output lifts them above 1.
SCALE = 1e3


def leaf(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


# ----------------------------------------------------------------------------------------------
# Names, shapes and initialisation as in PyTorch
# ----------------------------------------------------------------------------------------------

# (minirad constructor, torch constructor): the same arguments spelled for each library.
PAIRS = {
    "Conv2d": (lambda: nn.Conv2d(3, 4, (3, 5)), lambda t: t.nn.Conv2d(3, 4, (3, 5))),
    "Conv2d-nobias": (
        lambda: nn.Conv2d(3, 4, 3, bias=False),
        lambda t: t.nn.Conv2d(3, 4, 3, bias=False),
    ),
    "Linear": (lambda: nn.Linear(5, 2), lambda t: t.nn.Linear(5, 2)),
    "Embedding": (lambda: nn.Embedding(7, 3), lambda t: t.nn.Embedding(7, 3)),
    "RNNCell": (lambda: nn.RNNCell(3, 4), lambda t: t.nn.RNNCell(3, 4)),
    "LSTMCell": (lambda: nn.LSTMCell(3, 4), lambda t: t.nn.LSTMCell(3, 4)),
    "GRUCell": (lambda: nn.GRUCell(3, 4, bias=False), lambda t: t.nn.GRUCell(3, 4, bias=False)),
    "RNN": (lambda: nn.RNN(3, 4), lambda t: t.nn.RNN(3, 4)),
    "LSTM": (lambda: nn.LSTM(3, 4, batch_first=True), lambda t: t.nn.LSTM(3, 4, batch_first=True)),
    "GRU": (lambda: nn.GRU(3, 4), lambda t: t.nn.GRU(3, 4)),
    "Sequential": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)),
        lambda t: t.nn.Sequential(
            t.nn.Conv2d(1, 2, 3), t.nn.ReLU(), t.nn.Flatten(), t.nn.Linear(8, 3)
        ),
    ),
    "ModuleList": (
        lambda: nn.ModuleList([nn.Linear(2, 3), nn.ReLU()]).append(nn.LSTMCell(3, 2)),
        lambda t: t.nn.ModuleList([t.nn.Linear(2, 3), t.nn.ReLU()]).append(t.nn.LSTMCell(3, 2)),
    ),
    "ModuleDict": (
        lambda: nn.ModuleDict({"z": nn.Linear(2, 3), "a": nn.ModuleList([nn.Conv2d(1, 2, 3)])}),
        lambda t: t.nn.ModuleDict(
            {"z": t.nn.Linear(2, 3), "a": t.nn.ModuleList([t.nn.Conv2d(1, 2, 3)])}
        ),
    ),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_state_dict_names_and_shapes_equal_torch(name):
    torch = pytest.importorskip("torch")
    ours, theirs = PAIRS[name][0](), PAIRS[name][1](torch)
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert list(ours_shapes) == list(theirs_shapes)  # same names, same order
    assert ours_shapes == theirs_shapes
    # Loading into torch checks the same thing from torch's side (strict by default).
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})


def test_initialisation_follows_torch_bounds_and_seeds():
    conv = nn.Conv2d(2, 8, 3, rng=0)
    bound = 1 / np.sqrt(2 * 3 * 3)  # kaiming_uniform(a=sqrt(5)) reduces to 1/sqrt(fan_in)
    for p in (conv.weight, conv.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.8 * bound
    lstm = nn.LSTM(3, 25, rng=0)
    assert all(np.abs(p.data).max() <= 1 / 5 for p in lstm.parameters())
    table = nn.Embedding(1000, 20, padding_idx=-1, rng=0, dtype=np.float64).weight.data
    assert table.dtype == np.float64 and not table[-1].any()
    assert abs(table[:-1].std() - 1) < 0.02 and abs(table[:-1].mean()) < 0.02
    # The same seed gives the same parameters; a shared Generator gives fresh ones.
    np.testing.assert_array_equal(
        nn.Linear(4, 3, rng=1).weight.data, nn.Linear(4, 3, rng=1).weight.data
    )
    rng = np.random.default_rng(1)
    assert not np.array_equal(
        nn.Linear(4, 3, rng=rng).weight.data, nn.Linear(4, 3, rng=rng).weight.data
    )


# ----------------------------------------------------------------------------------------------
# Layer behaviour
# ----------------------------------------------------------------------------------------------


def test_dropout_train_and_eval():
    x = Tensor(np.ones((200, 50)), requires_grad=True)
    drop = nn.Dropout(0.25, rng=0)
    y = drop(x)
    kept = y.data != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y.data[kept], 1 / 0.75)  # inverted: E[y] = x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)  # the gradient goes through the same mask
    # The same seed reproduces the masks; eval mode is the identity.
    np.testing.assert_array_equal(nn.Dropout(0.25, rng=0)(x).data, y.data)
    assert drop.eval()(x) is x
    assert not nn.Dropout(1.0)(x).data.any()
    with pytest.raises(ValueError, match="p: a dropout probability"):
        nn.Dropout(1.5)


def test_embedding_accumulates_gradients_of_repeated_ids():
    emb = nn.Embedding(5, 2, padding_idx=0, rng=0, dtype=np.float64)
    ids = np.array([[[1, 1], [3, 0]], [[1, 0], [4, 4]]])  # (2, 2, 2): any shape of ids
    y = emb(ids)
    assert y.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(y.data[0, 1, 0], emb.weight.data[3])
    (y * 2.0).sum().backward()
    # Row v gets 2 * (number of times v occurs); the padding row gets nothing.
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [0, 6, 0, 2, 4])
    with pytest.raises(ValueError, match=r"ids: values must lie in \[0, 5\), got min -1"):
        emb(np.array([2, -1]))
    with pytest.raises(ValueError, match="ids: expected integers"):
        emb(np.array([1.0]))


class Stack(nn.Module):
    """Layers in a ModuleList, and (wrongly) the same kind of layers in a plain list."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 3, rng=0), nn.Linear(3, 2, rng=1)])
        self.forgotten = [nn.Linear(2, 2, rng=2)]  # a plain list: not registered

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_a_layer_in_a_module_list_is_trained_and_saved():
    model = Stack()
    names = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert list(model.state_dict()) == names  # the plain list's layer is invisible
    assert len(model.parameters()) == 4
    last = model.layers[-1].weight
    before = last.data.copy()
    optimizer = SGD(model.parameters(), lr=0.1)
    (model(Tensor(np.ones((2, 3), np.float32))) ** 2).sum().backward()
    optimizer.step()
    assert not np.array_equal(last.data, before)  # trained
    model.eval()
    assert not model.layers[0].training  # modes reach the layers of the list


def test_module_list_behaves_as_a_list():
    a, b, c = nn.ReLU(), nn.Linear(2, 2), nn.Linear(2, 3)
    layers = nn.ModuleList([a]).extend([b])
    assert len(layers) == 2 and list(layers) == [a, b] and layers[-1] is b
    sliced = layers[1:]
    assert isinstance(sliced, nn.ModuleList) and list(sliced) == [b]
    assert list(sliced.state_dict()) == ["0.weight", "0.bias"]  # renumbered, as in PyTorch
    layers.append(c)
    layers[1] = nn.Linear(2, 2)  # replaced in place: still "1", still second
    assert list(layers.state_dict()) == ["1.weight", "1.bias", "2.weight", "2.bias"]
    assert layers[1] is not b and layers[2] is c
    with pytest.raises(IndexError, match="index 3 out of range for 3 modules"):
        layers[3]
    with pytest.raises(TypeError, match="expected a Module, got list"):
        layers.append([nn.ReLU()])


def test_module_dict_behaves_as_a_dict():
    heads = nn.ModuleDict({"findings": nn.Linear(4, 9)})
    heads["words"] = nn.Linear(4, 7)
    heads.update([("extra", nn.ReLU())])
    assert list(heads) == list(heads.keys()) == ["findings", "words", "extra"]
    assert "words" in heads and len(heads) == 3 and heads["findings"].weight.shape == (9, 4)
    assert list(heads.state_dict()) == [
        "findings.weight",
        "findings.bias",
        "words.weight",
        "words.bias",
    ]
    del heads["findings"]
    assert list(heads.state_dict()) == ["words.weight", "words.bias"]
    assert [name for name, _ in heads.items()] == ["words", "extra"]
    for bad in ("a.b", "train", ""):  # a dot breaks state_dict names; "train" hides a method
        with pytest.raises(KeyError):
            heads[bad] = nn.ReLU()


def test_flatten_sequential_and_pool_shapes():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    assert model(Tensor(np.zeros((2, 1, 6, 6), np.float32))).shape == (2, 27)
    assert len(model) == 4 and isinstance(model[2], nn.MaxPool2d)
    assert nn.Flatten(0, 1)(Tensor(np.zeros((2, 3, 4)))).shape == (6, 4)


def test_recurrent_layers_match_their_cells_and_check_shapes():
    rng = np.random.default_rng(0)
    lstm, cell = nn.LSTM(3, 4, batch_first=True, rng=0), nn.LSTMCell(3, 4, rng=0)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
    x = Tensor(rng.standard_normal((2, 5, 3)).astype(np.float32))
    output, (h_n, c_n) = lstm(x)
    state = None
    for t in range(5):
        state = cell(x[:, t], state)
        np.testing.assert_allclose(output.data[:, t], state[0].data, rtol=1e-6)
    np.testing.assert_allclose(h_n.data[0], state[0].data, rtol=1e-6)
    np.testing.assert_allclose(c_n.data[0], state[1].data, rtol=1e-6)
    with pytest.raises(ValueError, match=r"h0: expected shape \(1, 2, 4\)"):
        nn.GRU(3, 4)(Tensor(np.zeros((5, 2, 3), np.float32)), Tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"x: expected a non-empty sequence \(T, B, I\)"):
        nn.RNN(3, 4)(Tensor(np.zeros((5, 3), np.float32)))


def lstm_and_its_cell(bias: bool, batch_first: bool) -> tuple[nn.LSTM, nn.LSTMCell]:
    """An nn.LSTM (float64) and an nn.LSTMCell holding the same parameters."""
    lstm = nn.LSTM(3, 4, bias=bias, batch_first=batch_first, rng=0, dtype=np.float64)
    cell = nn.LSTMCell(3, 4, bias=bias, rng=1, dtype=np.float64)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
    return lstm, cell


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("bias", "batch_first", "x_needs_grad"),
    [(True, False, True), (True, True, True), (False, False, True), (True, False, False)],
)
def test_lstm_layer_equals_its_cell_loop(name, bias, batch_first, x_needs_grad):
    """nn.LSTM runs its sequence as one Function (kernels/lstm_sequence); stepping nn.LSTMCell
    over the same sequence must give the same output, final state and gradients of every
    input and parameter, in float64 to rounding (the op only regroups the matrix products).
    With an x that needs no gradient the op skips dx: the other gradients must not change."""
    rng = np.random.default_rng(3)
    T, B = 5, 2
    lstm, cell = lstm_and_its_cell(bias, batch_first)
    x_data = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    h0, c0 = leaf(rng, 1, B, 4), leaf(rng, 1, B, 4)
    u, v, w = (
        rng.standard_normal((T, B, 4)),
        rng.standard_normal((B, 4)),
        rng.standard_normal((B, 4)),
    )

    def loss(output_tbh, h_n, c_n):  # every output read: dhs, dh_n and dc_n all non-zero
        return (output_tbh * Tensor(u)).sum() + (h_n * Tensor(v)).sum() + (c_n * Tensor(w)).sum()

    with backend.use_backend(name):
        x = Tensor(x_data.copy(), requires_grad=x_needs_grad)
        output, (h_n, c_n) = lstm(x, (h0, c0))
        time_major = output.transpose(1, 0, 2) if batch_first else output
        tape = [type(fn).__name__ for fn in topological_order(h_n._creator)]
        assert "LSTMSequence" in tape and "LSTMCell" not in tape, tape  # the path under test
        loss(time_major, h_n.reshape(B, 4), c_n.reshape(B, 4)).backward()
        layer_grads = [x.grad, h0.grad, c0.grad, *(p.grad for p in lstm.parameters())]

        x_loop = Tensor(x_data.copy(), requires_grad=x_needs_grad)
        h0_loop, c0_loop = Tensor(h0.data, requires_grad=True), Tensor(c0.data, requires_grad=True)
        state, hs = (h0_loop.reshape(B, 4), c0_loop.reshape(B, 4)), []
        for t in range(T):
            state = cell(x_loop[:, t] if batch_first else x_loop[t], state)
            hs.append(state[0])
        loss(stack(hs), *state).backward()
        loop_grads = [x_loop.grad, h0_loop.grad, c0_loop.grad, *(p.grad for p in cell.parameters())]

    np.testing.assert_allclose(time_major.data, stack(hs).data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_n.data[0], state[0].data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_n.data[0], state[1].data, rtol=1e-12, atol=1e-14)
    names = ["x", "h0", "c0", *(n for n, _ in lstm.named_parameters())]
    assert len(layer_grads) == len(loop_grads) == len(names)
    for grad_name, ours, expected in zip(names, layer_grads, loop_grads, strict=True):
        if grad_name == "x" and not x_needs_grad:
            assert ours is None and expected is None
            continue
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-13, err_msg=grad_name)


def test_attention_weights_are_a_distribution_over_valid_positions():
    att = nn.AdditiveAttention(query_dim=3, key_dim=5, hidden_dim=4, rng=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    query, keys = Tensor(rng.standard_normal((2, 3))), Tensor(rng.standard_normal((2, 4, 5)))
    mask = np.array([[True, True, False, True], [True, False, False, False]])
    context, alpha = att(query, keys, mask)
    np.testing.assert_allclose(alpha.data.sum(axis=1), 1.0)
    assert not alpha.data[~mask].any()
    np.testing.assert_allclose(alpha.data[1, 0], 1.0)  # one valid position takes all the weight
    np.testing.assert_allclose(context.data[1], keys.data[1, 0])
    np.testing.assert_allclose(context.data, np.einsum("bl,bld->bd", alpha.data, keys.data))
    # Keys projected once give the same result (what a decoder does at every step).
    same, _ = att(query, keys, mask, projected_keys=att.project_keys(keys))
    np.testing.assert_array_equal(same.data, context.data)


def test_losses():
    logits = Tensor(np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), requires_grad=True)
    loss = nn.CrossEntropyLoss(ignore_index=0)(logits, [2, 0])  # the second row is padding
    log_p = logits.data[0] - np.log(np.exp(logits.data[0]).sum())
    np.testing.assert_allclose(loss.item(), -log_p[2])
    z = Tensor(np.array([[-30.0, 0.0], [2.0, 40.0]], np.float32), requires_grad=True)
    bce = nn.BCEWithLogitsLoss()(z, np.array([[0, 1], [1, 1]]))
    t, z64 = np.array([[0, 1], [1, 1]]), z.data.astype(np.float64)
    # -log sigmoid(z) = log(1 + exp(-z)) and -log(1 - sigmoid(z)) = log(1 + exp(z))
    expected = np.mean(t * np.logaddexp(0, -z64) + (1 - t) * np.logaddexp(0, z64))
    np.testing.assert_allclose(bce.item(), expected, rtol=1e-6)
    assert bce.dtype == np.float32  # integer targets do not promote the loss to float64
    with pytest.raises(ValueError, match=r"targets: expected shape \(2,\)"):
        nn.CrossEntropyLoss()(logits, [[1, 2]])


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, rng=seed)
        self.rnn = nn.GRU(3, 2, rng=seed)


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "model.npz"
    saved = Tiny(seed=0)
    checkpoint.save(saved, path)
    checkpoint.save(saved, path)  # overwriting an existing checkpoint works the same
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left over
    restored = Tiny(seed=1)
    checkpoint.load_into(restored, path)
    for (name, a), (_, b) in zip(
        saved.state_dict().items(), restored.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert list(checkpoint.load(path)) == list(saved.state_dict())
    # A plain dict saves too, and np.load reads the file without minirad.
    checkpoint.save({"file": np.arange(3)}, tmp_path / "plain.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npz")["file"], np.arange(3))


def _assert_one_line_error(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_checkpoint_failures_are_one_line_value_errors(tmp_path):
    model = Tiny(seed=0)
    good = tmp_path / "good.npz"
    checkpoint.save(model, good)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.npz"
    text.write_text("these are my notes, not a checkpoint\n")
    missing = tmp_path / "missing.npz"
    for path in (truncated, text, missing):
        with pytest.raises(ValueError) as error:
            checkpoint.load_into(model, path)
        _assert_one_line_error(error, str(path), "not a readable .npz checkpoint")

    wrong_shape = {**model.state_dict(), "rnn.weight_hh_l0": np.zeros((6, 3), np.float32)}
    checkpoint.save(wrong_shape, tmp_path / "shape.npz")
    with pytest.raises(ValueError) as error:
        checkpoint.load_into(model, tmp_path / "shape.npz")
    _assert_one_line_error(error, "shape.npz", "'rnn.weight_hh_l0'", "(6, 3)", "(6, 2)")

    state = model.state_dict()
    del state["conv.bias"]
    checkpoint.save(state, tmp_path / "short.npz")
    with pytest.raises(ValueError) as error:
        checkpoint.load_into(model, tmp_path / "short.npz")
    _assert_one_line_error(error, "short.npz", "missing entry 'conv.bias'")

    wrong_dtype = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    checkpoint.save(wrong_dtype, tmp_path / "dtype.npz")
    with pytest.raises(ValueError) as error:
        checkpoint.load_into(model, tmp_path / "dtype.npz")
    _assert_one_line_error(error, "dtype.npz", "'conv.weight'", "float64")
    np.testing.assert_array_equal(model.conv.bias.data, Tiny(seed=0).conv.bias.data)  # unchanged

    with pytest.raises(ValueError) as error:
        checkpoint.save({"names": np.array(["a", None], dtype=object)}, tmp_path / "obj.npz")
    _assert_one_line_error(error, "obj.npz", "'names'")
    assert not (tmp_path / "obj.npz").exists()


# ----------------------------------------------------------------------------------------------
# Whole-model gradient checks (float64, every CPU backend)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_gradcheck_cnn_classifier(name):
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, rng=rng, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 3, rng=rng, dtype=np.float64),
    )
    x, targets = leaf(rng, 2, 1, 6, 6), np.array([2, 0])
    loss = nn.CrossEntropyLoss()
    with backend.use_backend(name):
        assert gradcheck(lambda x, *_: loss(model(x), targets) * SCALE, [x, *model.parameters()])


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradcheck_recurrent_decoder(name, kind):
    """T = 3 steps, B = 2, decoded to V = 5 words; three of the six targets are padding."""
    rng = np.random.default_rng(1)
    rnn = getattr(nn, kind)(3, 4, rng=rng, dtype=np.float64)
    decoder = nn.Linear(4, 5, rng=rng, dtype=np.float64)
    targets = np.array([[1, 4], [PAD, 0], [PAD, PAD]])  # (T, B): the second sequence is longer
    x, h0 = leaf(rng, 3, 2, 3), leaf(rng, 1, 2, 4)
    state = (h0, leaf(rng, 1, 2, 4)) if kind == "LSTM" else h0
    initial = list(state) if kind == "LSTM" else [state]

    def loss(x, *_):
        output, _ = rnn(x, state)
        return F.cross_entropy(decoder(output), targets) * SCALE  # (T, B, V) against (T, B)

    params = [rnn.weight_hh_l0, rnn.bias_ih_l0, decoder.weight]
    with backend.use_backend(name):
        assert gradcheck(loss, [x, *initial, *params])


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_gradcheck_lstm_layer(name):
    """The whole-sequence LSTM Function, batch first, every input and parameter at once."""
    rng = np.random.default_rng(4)
    lstm = nn.LSTM(3, 4, batch_first=True, rng=rng, dtype=np.float64)
    x, h0, c0 = leaf(rng, 2, 4, 3), leaf(rng, 1, 2, 4), leaf(rng, 1, 2, 4)

    def outputs(x, h0, c0, *_):
        output, (h_n, c_n) = lstm(x, (h0, c0))  # (B, T, H), (1, B, H), (1, B, H)
        return concatenate([output, h_n.reshape(2, 1, 4), c_n.reshape(2, 1, 4)], axis=1) * SCALE

    with backend.use_backend(name):
        assert gradcheck(outputs, [x, h0, c0, *lstm.parameters()])


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_gradcheck_attention(name):
    rng = np.random.default_rng(2)
    att = nn.AdditiveAttention(query_dim=3, key_dim=4, hidden_dim=3, rng=rng, dtype=np.float64)
    query, keys = leaf(rng, 2, 3), leaf(rng, 2, 5, 4)
    mask = np.array([[True] * 5, [True, True, True, False, False]])

    def outputs(query, keys, *_):
        context, alpha = att(query, keys, mask)
        return concatenate([context, alpha], axis=1) * SCALE  # both outputs at once

    with backend.use_backend(name):
        assert gradcheck(outputs, [query, keys, *att.parameters()])
