"""Every backward against central finite differences of its own forward, in float64.

For an op y = f(x1, x2, ...) and a random upstream gradient dy, the backward must return
dL/dxi for L = <dy, f(x)>. `numerical_vjp` estimates the same numbers by perturbing one input
element at a time (error O(eps^2) + rounding/eps ~ 1e-9), so a relative error of 1e-6 separates
a right gradient from a wrong one by orders of magnitude. Runs over every float64
implementation, the reference included; shapes stay tiny because the check costs two forward
calls per input element.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from harness import Impl, assert_all_close, assert_close, impls, numerical_vjp, to_numpy
from shapes import cell_cases, conv_cases, linear_cases, pool_cases, softmax_cases

TOL = (1e-6, 1.0)  # relative error, scale floor (see harness.SCALE_FLOOR)
FEW = settings(max_examples=15)


def float64_impls(family: str) -> list[Impl]:
    return [i for i in impls(family, include_reference=True) if i.dtype == np.float64]


def host_fn(fn):
    """Wrap an op so that its outputs come back as host arrays (for the GPU backends)."""

    def wrapped(*args):
        out = fn(*args)
        return tuple(to_numpy(o) for o in out) if isinstance(out, tuple) else to_numpy(out)

    return wrapped


@pytest.mark.parametrize("impl", float64_impls("conv2d"), ids=str)
@FEW
@given(case=conv_cases(max_size=5, max_channels=2))
def test_conv2d_gradcheck(impl: Impl, case):
    x, w, b, dy = case.arrays(np.float64)
    b = np.zeros(case.K) if b is None else b

    def forward(x, w, b):
        return impl.ops.conv2d_forward(x, w, b, case.stride, case.padding)

    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)  # perturbed in place below
    expected = numerical_vjp(host_fn(forward), [x, w, b], dy)
    got = impl.ops.conv2d_backward(dy, x, w, case.stride, case.padding)
    where = f"conv2d gradcheck [{impl}] {case}"
    assert_all_close([to_numpy(g) for g in got], expected, ["dx", "dw", "db"], TOL, where)


@pytest.mark.parametrize("impl", float64_impls("maxpool2d"), ids=str)
@FEW
@given(case=pool_cases(max_size=6, values=("distinct",)))
def test_maxpool2d_gradcheck(impl: Impl, case):
    x, dy = case.arrays(np.float64)
    x = np.ascontiguousarray(x)
    hyper = dict(kernel=case.kernel, stride=case.stride, padding=case.padding)

    def forward(x):
        return to_numpy(impl.ops.maxpool2d_forward(x, **hyper)[0])

    (expected,) = numerical_vjp(forward, [x], dy)
    _, argmax = impl.ops.maxpool2d_forward(x, **hyper)
    got = impl.ops.maxpool2d_backward(dy, argmax, x.shape, **hyper)
    assert_close(to_numpy(got), expected, TOL, f"maxpool2d gradcheck [{impl}] {case}")


@pytest.mark.parametrize("impl", float64_impls("linear"), ids=str)
@FEW
@given(case=linear_cases())
def test_linear_gradcheck(impl: Impl, case):
    x, w, _, dy = case.arrays(np.float64)
    x, w, b = np.ascontiguousarray(x), np.ascontiguousarray(w), np.zeros(case.n_out)
    expected = numerical_vjp(host_fn(impl.ops.linear_forward), [x, w, b], dy)
    got = impl.ops.linear_backward(dy, x, w)
    where = f"linear gradcheck [{impl}] {case}"
    assert_all_close([to_numpy(g) for g in got], expected, ["dx", "dw", "db"], TOL, where)


def _contiguous(arrays):
    return [np.ascontiguousarray(a) for a in arrays]


@pytest.mark.parametrize("impl", float64_impls("rnn"), ids=str)
@FEW
@given(case=cell_cases())
def test_rnn_tanh_cell_gradcheck(impl: Impl, case):
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(1, np.float64)
    inputs = _contiguous([x, h, w_ih, w_hh, b_ih, b_hh])
    expected = numerical_vjp(host_fn(impl.ops.rnn_tanh_cell_forward), inputs, dh_new)
    h_new = impl.ops.rnn_tanh_cell_forward(*inputs)
    got = impl.ops.rnn_tanh_cell_backward(dh_new, *inputs[:4], h_new)
    names = ["dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    where = f"rnn_tanh_cell gradcheck [{impl}] {case}"
    assert_all_close([to_numpy(g) for g in got], expected, names, TOL, where)


@pytest.mark.parametrize("impl", float64_impls("rnn"), ids=str)
@FEW
@given(case=cell_cases())
def test_lstm_cell_gradcheck(impl: Impl, case):
    x, h, c, w_ih, w_hh, b_ih, b_hh, dh_new, dc_new = case.arrays(4, np.float64)
    inputs = _contiguous([x, h, c, w_ih, w_hh, b_ih, b_hh])

    def forward(*args):  # (h_new, c_new): both outputs carry a gradient
        h_new, c_new, _ = impl.ops.lstm_cell_forward(*args)
        return to_numpy(h_new), to_numpy(c_new)

    expected = numerical_vjp(forward, inputs, (dh_new, dc_new))
    _, _, cache = impl.ops.lstm_cell_forward(*inputs)
    dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh = impl.ops.lstm_cell_backward(dh_new, dc_new, cache)
    got = [dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh]  # same order as the inputs
    names = ["dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    where = f"lstm_cell gradcheck [{impl}] {case}"
    assert_all_close([to_numpy(g) for g in got], expected, names, TOL, where)


@pytest.mark.parametrize("impl", float64_impls("rnn"), ids=str)
@FEW
@given(case=cell_cases())
def test_gru_cell_gradcheck(impl: Impl, case):
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(3, np.float64)
    inputs = _contiguous([x, h, w_ih, w_hh, b_ih, b_hh])

    def forward(*args):
        return to_numpy(impl.ops.gru_cell_forward(*args)[0])

    expected = numerical_vjp(forward, inputs, dh_new)
    _, cache = impl.ops.gru_cell_forward(*inputs)
    got = impl.ops.gru_cell_backward(dh_new, cache)
    names = ["dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    where = f"gru_cell gradcheck [{impl}] {case}"
    assert_all_close([to_numpy(g) for g in got], expected, names, TOL, where)


@pytest.mark.parametrize("impl", float64_impls("softmax"), ids=str)
@FEW
@given(case=softmax_cases())
def test_softmax_family_gradcheck(impl: Impl, case):
    x, dy, _ = case.arrays(np.float64)
    x = np.ascontiguousarray(x) / case.scale  # moderate logits: finite differences stay exact
    for name in ("softmax", "log_softmax"):
        forward = getattr(impl.ops, name)
        (expected,) = numerical_vjp(lambda x, f=forward: to_numpy(f(x, case.axis)), [x], dy)
        y = forward(x, case.axis)
        got = getattr(impl.ops, name + "_backward")(dy, y, case.axis)
        assert_close(to_numpy(got), expected, TOL, f"{name} gradcheck [{impl}] {case}")


@pytest.mark.parametrize("impl", float64_impls("softmax"), ids=str)
@FEW
@given(case=softmax_cases(rank=2))
def test_softmax_cross_entropy_gradcheck(impl: Impl, case):
    logits, _, targets = case.arrays(np.float64)
    logits = np.ascontiguousarray(logits) / case.scale

    def loss(logits):
        return to_numpy(impl.ops.softmax_cross_entropy(logits, targets, -100)[0])

    (expected,) = numerical_vjp(loss, [logits], np.ones(()))
    _, dlogits = impl.ops.softmax_cross_entropy(logits, targets, -100)
    assert_close(to_numpy(dlogits), expected, TOL, f"softmax_cross_entropy gradcheck [{impl}]")
