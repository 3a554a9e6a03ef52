"""Bad input is refused before any kernel runs, with a ValueError that names the argument.

Each row: an op, its arguments with one thing wrong, and the argument the message must start
with ("x: expected 4-D array, got shape (3, 8, 8)"). Runs on every backend, because the checks
are the contract's and every backend must go through them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from minirad import kernels
from minirad.kernels._check import GRUCache, LSTMCache

f64, f32 = np.float64, np.float32


def a(*shape, dtype=f64):
    return np.zeros(shape, dtype=dtype)


X, Wc, B = a(2, 3, 8, 8), a(4, 3, 3, 3), a(4)
DY = a(2, 4, 6, 6)
_ref = kernels.get("numpy")
_, _, LSTM_CACHE = _ref.lstm_cell_forward(
    a(2, 3), a(2, 5), a(2, 5), a(20, 3), a(20, 5), a(20), a(20)
)
_, GRU_CACHE = _ref.gru_cell_forward(a(2, 3), a(2, 5), a(15, 3), a(15, 5), a(15), a(15))

BAD_INPUTS = [
    # conv2d
    ("conv2d_forward", (a(3, 8, 8), Wc, B), {}, "x"),
    ("conv2d_forward", (X, a(4, 2, 3, 3), B), {}, "w"),  # channels differ
    ("conv2d_forward", (X, Wc, a(5)), {}, "b"),
    ("conv2d_forward", (X, Wc, B), {"stride": 0}, "stride"),
    ("conv2d_forward", (X, Wc, B), {"stride": (1, 2, 3)}, "stride"),
    ("conv2d_forward", (X, Wc, B), {"padding": -1}, "padding"),
    ("conv2d_forward", (X, a(4, 3, 11, 3), B), {}, "w"),  # output would be empty
    ("conv2d_forward", (X.astype(f32), Wc, B), {}, "w"),  # mixed dtypes
    ("conv2d_forward", (X.astype(np.int32), Wc, B), {}, "x"),  # not float
    ("conv2d_forward", (X.tolist(), Wc, B), {}, "x"),  # not an array
    ("conv2d_backward", (a(2, 4, 5, 6), X, Wc), {}, "dy"),
    # maxpool2d
    ("maxpool2d_forward", (a(8, 8),), {}, "x"),
    ("maxpool2d_forward", (X,), {"kernel": 0}, "kernel"),
    ("maxpool2d_forward", (X,), {"kernel": 2, "padding": 2}, "padding"),
    ("maxpool2d_forward", (X,), {"kernel": 9}, "kernel"),
    ("maxpool2d_forward", (X,), {"stride": (0, 1)}, "stride"),
    ("maxpool2d_backward", (a(2, 3, 4, 4), a(2, 3, 4, 4), X.shape), {}, "argmax"),  # float idx
    ("maxpool2d_backward", (a(2, 3, 3, 4), a(2, 3, 4, 4, dtype=np.int64), X.shape), {}, "dy"),
    (
        "maxpool2d_backward",
        (a(2, 3, 4, 4), a(2, 3, 4, 4, dtype=np.int64), (2, 3, 8)),
        {},
        "x_shape",
    ),
    # linear
    ("linear_forward", (a(2, 3), a(4, 5), None), {}, "w"),
    ("linear_forward", (a(2, 3, 1), a(4, 3), None), {}, "x"),
    ("linear_forward", (a(2, 3), a(4, 3), a(3)), {}, "b"),
    ("linear_backward", (a(2, 5), a(2, 3), a(4, 3)), {}, "dy"),
    # cells
    ("rnn_tanh_cell_forward", (a(2, 3), a(3, 5), a(5, 3), a(5, 5), a(5), a(5)), {}, "h"),
    ("rnn_tanh_cell_forward", (a(2, 3), a(2, 5), a(5, 4), a(5, 5), a(5), a(5)), {}, "w_ih"),
    (
        "rnn_tanh_cell_backward",
        (a(2, 4), a(2, 3), a(2, 5), a(5, 3), a(5, 5), a(2, 5)),
        {},
        "dh_new",
    ),
    (
        "lstm_cell_forward",
        (a(2, 3), a(2, 5), a(2, 5), a(15, 3), a(20, 5), a(20), a(20)),
        {},
        "w_ih",
    ),
    ("lstm_cell_forward", (a(2, 3), a(2, 5), a(2, 4), a(20, 3), a(20, 5), a(20), a(20)), {}, "c"),
    (
        "lstm_cell_forward",
        (a(2, 3), a(2, 5), a(2, 5), a(20, 3), a(20, 5), a(20), a(19)),
        {},
        "b_hh",
    ),
    ("rnn_tanh_cell_forward", (a(2, 3), a(2, 5), a(5, 3), a(5, 5), None, a(5)), {}, "b_ih"),
    ("lstm_cell_forward", (a(2, 3), a(2, 5), a(2, 5), a(20, 3), a(20, 5), a(20), None), {}, "b_hh"),
    ("gru_cell_forward", (a(2, 3), a(2, 5), a(15, 3), a(15, 5), None, None), {}, "b_ih"),
    ("lstm_cell_backward", (a(2, 5), a(2, 5), GRU_CACHE), {}, "cache"),
    ("lstm_cell_backward", (a(2, 5), a(2, 4), LSTM_CACHE), {}, "dc_new"),
    ("gru_cell_forward", (a(2, 3), a(2, 5), a(15, 3), a(15, 4), a(15), a(15)), {}, "w_hh"),
    ("gru_cell_backward", (a(2, 5), LSTM_CACHE), {}, "cache"),
    ("gru_cell_backward", (a(2, 5, dtype=f32), GRU_CACHE), {}, "dh_new"),
    # softmax family
    ("softmax", (a(3, 4),), {"axis": 2}, "axis"),
    ("softmax", (np.zeros(()),), {}, "x"),
    ("softmax", (a(3, 0),), {}, "x"),
    ("log_softmax", (a(3, 4, dtype=np.int64),), {}, "x"),
    ("softmax_backward", (a(3, 5), a(3, 4)), {}, "dy"),
    ("log_softmax_backward", (a(3, 4), a(3, 4)), {"axis": -3}, "axis"),
    ("softmax_cross_entropy", (a(3, 4), np.array([0, 1, 4])), {}, "targets"),  # out of range
    ("softmax_cross_entropy", (a(3, 4), np.array([0.0, 1, 2])), {}, "targets"),  # not int
    ("softmax_cross_entropy", (a(3, 4), np.array([0, 1])), {}, "targets"),
    (
        "softmax_cross_entropy",
        (
            a(
                3,
            ),
            np.array([0, 1, 2]),
        ),
        {},
        "logits",
    ),
    (
        "softmax_cross_entropy",
        (a(3, 4), np.array([0, 1, 2])),
        {"ignore_index": 0.5},
        "ignore_index",
    ),
]


@pytest.mark.parametrize("backend", kernels.available())
@pytest.mark.parametrize(
    "op,args,kwargs,argument",
    BAD_INPUTS,
    ids=[f"{r[0]}-{r[3]}-{i}" for i, r in enumerate(BAD_INPUTS)],
)
def test_bad_input_names_the_argument(backend, op, args, kwargs, argument):
    ops = kernels.get(backend)
    if ops.on_device:  # the bad input itself, on the device (a host array is refused anyway)
        if (op, argument) == ("softmax_cross_entropy", "targets") and _out_of_range(*args):
            pytest.skip("device targets are not read back to be range-checked (_check.py)")
        args = tuple(ops.xp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    with pytest.raises(ValueError, match=rf"^{re.escape(argument)}: "):
        getattr(ops, op)(*args, **kwargs)


def _out_of_range(logits, targets) -> bool:
    """The BAD_INPUTS row whose targets are fine but for one class id outside [0, V)."""
    return targets.dtype.kind == "i" and targets.shape == (logits.shape[0],)


@pytest.mark.parametrize("backend", [b for b in kernels.available() if kernels.get(b).on_device])
def test_device_backends_refuse_host_arrays(backend):
    """The message says which argument is on the wrong side, and that sides are the issue."""
    with pytest.raises(ValueError, match=r"^x: expected .*ndarray, got numpy.ndarray .*device"):
        kernels.get(backend).linear_forward(a(2, 3), kernels.get(backend).xp.asarray(a(4, 3)), None)


def test_cache_types_are_the_contracts():
    assert isinstance(LSTM_CACHE, LSTMCache) and isinstance(GRU_CACHE, GRUCache)


def test_ignored_targets_may_be_out_of_range():
    loss, _ = _ref.softmax_cross_entropy(a(3, 4), np.array([0, -100, 3]), -100)
    assert np.isfinite(loss)


def test_unknown_backend_and_version_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        kernels.get("tpu")
    with pytest.raises(ValueError, match="^conv2d: backend 'numpy' has no version 'winograd'"):
        kernels.get("numpy", conv2d="winograd")
    with pytest.raises(ValueError, match="^pooling: not an op folder"):
        kernels.get("numpy", pooling="x")


def test_int_and_pair_hyperparameters_mean_the_same():
    x, w = np.random.default_rng(0).standard_normal((1, 1, 6, 7)), np.ones((1, 1, 2, 3))
    np.testing.assert_array_equal(
        _ref.conv2d_forward(x, w, None, stride=2, padding=1),
        _ref.conv2d_forward(x, w, None, stride=(2, 2), padding=[1, 1]),
    )
