"""Every implementation of every op agrees with the float64 reference.

One property body per op folder, parametrized over `harness.impls(family)`: every backend that
runs here, every version it holds, float32 and float64. A new backend or version joins these
tests by being registered, with no edit here. The inputs are built in the implementation's dtype
and the reference sees the same values in float64, so a float32 kernel is held to float32
rounding (1e-4 relative) and a float64 kernel to float64 rounding (1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given

from harness import Impl, assert_all_close, assert_close, assert_dtype, impls, reference, to_numpy
from shapes import (
    CellCase,
    ConvCase,
    PoolCase,
    cell_cases,
    conv_cases,
    linear_cases,
    pool_cases,
    softmax_cases,
)


def f64(arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def host(arrays):
    return [to_numpy(a) for a in arrays]


# ----------------------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", impls("conv2d"), ids=str)
@given(case=conv_cases())
@example(case=ConvCase(1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), True, True, 0))  # 1x1 image
@example(case=ConvCase(1, 2, 3, 5, 4, 5, 4, (1, 1), (0, 0), True, True, 1))  # kernel = input
@example(case=ConvCase(2, 2, 2, 7, 7, 2, 2, (3, 3), (0, 0), False, False, 2))  # stride > kernel
@example(case=ConvCase(1, 1, 2, 3, 3, 3, 3, (2, 1), (1, 2), True, True, 3))  # padding
def test_conv2d(impl: Impl, case: ConvCase):
    x, w, b, dy = case.arrays(impl.dtype)
    where = f"conv2d [{impl}] {case}"
    ref = reference()
    y = impl.ops.conv2d_forward(x, w, b, case.stride, case.padding)
    y_ref = ref.conv2d_forward(*f64([x, w, b]), case.stride, case.padding)
    assert_dtype([y], impl.dtype, where)
    assert_close(to_numpy(y), y_ref, impl.tol, f"{where} forward y")

    grads = impl.ops.conv2d_backward(dy, x, w, case.stride, case.padding)
    grads_ref = ref.conv2d_backward(*f64([dy, x, w]), case.stride, case.padding)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, ["dx", "dw", "db"], impl.tol, f"{where} backward")


# ----------------------------------------------------------------------------------------------
# maxpool2d
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", impls("maxpool2d"), ids=str)
@given(case=pool_cases())
@example(case=PoolCase(1, 1, 1, 1, (1, 1), (1, 1), (0, 0), True, 0))  # 1x1 image
@example(case=PoolCase(2, 2, 5, 3, (5, 3), (1, 1), (0, 0), True, 1))  # window = input
@example(case=PoolCase(1, 2, 8, 8, (2, 2), (3, 3), (0, 0), False, 2))  # stride > kernel
@example(case=PoolCase(1, 1, 5, 5, (3, 3), (1, 1), (1, 1), True, 3))  # overlap + padding
def test_maxpool2d(impl: Impl, case: PoolCase):
    x, dy = case.arrays(impl.dtype)
    where = f"maxpool2d [{impl}] {case}"
    ref = reference()
    hyper = dict(kernel=case.kernel, stride=case.stride, padding=case.padding)
    y, argmax = impl.ops.maxpool2d_forward(x, **hyper)
    y_ref, argmax_ref = ref.maxpool2d_forward(np.asarray(x, np.float64), **hyper)
    assert_dtype([y], impl.dtype, where)
    assert_close(to_numpy(y), y_ref, impl.tol, f"{where} forward y")
    np.testing.assert_array_equal(to_numpy(argmax), argmax_ref, err_msg=f"{where} argmax")

    dx = impl.ops.maxpool2d_backward(dy, argmax, x.shape, **hyper)
    dx_ref = ref.maxpool2d_backward(np.asarray(dy, np.float64), argmax_ref, x.shape, **hyper)
    assert_dtype([dx], impl.dtype, where)
    assert_close(to_numpy(dx), dx_ref, impl.tol, f"{where} backward dx")


# ----------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", impls("linear"), ids=str)
@given(case=linear_cases())
def test_linear(impl: Impl, case):
    x, w, b, dy = case.arrays(impl.dtype)
    where = f"linear [{impl}] {case}"
    ref = reference()
    y = impl.ops.linear_forward(x, w, b)
    assert_dtype([y], impl.dtype, where)
    assert_close(to_numpy(y), ref.linear_forward(*f64([x, w, b])), impl.tol, f"{where} y")
    grads = impl.ops.linear_backward(dy, x, w)
    assert_dtype(grads, impl.dtype, where)
    grads_ref = ref.linear_backward(*f64([dy, x, w]))
    assert_all_close(host(grads), grads_ref, ["dx", "dw", "db"], impl.tol, f"{where} backward")


# ----------------------------------------------------------------------------------------------
# recurrent cells
# ----------------------------------------------------------------------------------------------

CELL_GRADS = {
    "rnn_tanh": ["dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"],
    "lstm": ["dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"],
    "gru": ["dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"],
}

HIDDEN_1 = CellCase(B=1, I=1, H=1, scale=1.0, contiguous=True, seed=0)
SATURATED = CellCase(B=3, I=4, H=2, scale=5.0, contiguous=False, seed=1)


@pytest.mark.parametrize("impl", impls("rnn"), ids=str)
@given(case=cell_cases())
@example(case=HIDDEN_1)
@example(case=SATURATED)
def test_rnn_tanh_cell(impl: Impl, case: CellCase):
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(1, impl.dtype)
    where = f"rnn_tanh_cell [{impl}] {case}"
    ref = reference()
    h_new = impl.ops.rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    h_new_ref = ref.rnn_tanh_cell_forward(*f64([x, h, w_ih, w_hh, b_ih, b_hh]))
    assert_dtype([h_new], impl.dtype, where)
    assert_close(to_numpy(h_new), h_new_ref, impl.tol, f"{where} h_new")

    grads = impl.ops.rnn_tanh_cell_backward(dh_new, x, h, w_ih, w_hh, h_new)
    grads_ref = ref.rnn_tanh_cell_backward(*f64([dh_new, x, h, w_ih, w_hh]), h_new_ref)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, CELL_GRADS["rnn_tanh"], impl.tol, where)


@pytest.mark.parametrize("impl", impls("rnn"), ids=str)
@given(case=cell_cases())
@example(case=HIDDEN_1)
@example(case=SATURATED)
def test_lstm_cell(impl: Impl, case: CellCase):
    x, h, c, w_ih, w_hh, b_ih, b_hh, dh_new, dc_new = case.arrays(4, impl.dtype)
    where = f"lstm_cell [{impl}] {case}"
    ref = reference()
    h_new, c_new, cache = impl.ops.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    h_ref, c_ref, cache_ref = ref.lstm_cell_forward(*f64([x, h, c, w_ih, w_hh, b_ih, b_hh]))
    assert_dtype([h_new, c_new, cache.gates], impl.dtype, where)
    assert_all_close(
        host([h_new, c_new, cache.gates, cache.tanh_c_new]),
        [h_ref, c_ref, cache_ref.gates, cache_ref.tanh_c_new],
        ["h_new", "c_new", "cache.gates", "cache.tanh_c_new"],
        impl.tol,
        f"{where} forward",
    )
    grads = impl.ops.lstm_cell_backward(dh_new, dc_new, cache)
    grads_ref = ref.lstm_cell_backward(*f64([dh_new, dc_new]), cache_ref)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, CELL_GRADS["lstm"], impl.tol, f"{where} backward")


@pytest.mark.parametrize("impl", impls("rnn"), ids=str)
@given(case=cell_cases())
@example(case=HIDDEN_1)
@example(case=SATURATED)
def test_gru_cell(impl: Impl, case: CellCase):
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(3, impl.dtype)
    where = f"gru_cell [{impl}] {case}"
    ref = reference()
    h_new, cache = impl.ops.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    h_ref, cache_ref = ref.gru_cell_forward(*f64([x, h, w_ih, w_hh, b_ih, b_hh]))
    assert_dtype([h_new, cache.gates, cache.hn], impl.dtype, where)
    assert_all_close(
        host([h_new, cache.gates, cache.hn]),
        [h_ref, cache_ref.gates, cache_ref.hn],
        ["h_new", "cache.gates", "cache.hn"],
        impl.tol,
        f"{where} forward",
    )
    grads = impl.ops.gru_cell_backward(dh_new, cache)
    grads_ref = ref.gru_cell_backward(np.asarray(dh_new, np.float64), cache_ref)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, CELL_GRADS["gru"], impl.tol, f"{where} backward")


# ----------------------------------------------------------------------------------------------
# softmax family
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", impls("softmax"), ids=str)
@given(case=softmax_cases())
def test_softmax_and_log_softmax(impl: Impl, case):
    x, dy, _ = case.arrays(impl.dtype)
    where = f"softmax [{impl}] {case}"
    ref = reference()
    x64, dy64 = f64([x, dy])
    for name in ("softmax", "log_softmax"):
        y = getattr(impl.ops, name)(x, case.axis)
        y_ref = getattr(ref, name)(x64, case.axis)
        assert_dtype([y], impl.dtype, where)
        assert_close(to_numpy(y), y_ref, impl.tol, f"{where} {name}")
        # The backward is fed the reference's y (cast), so only the backward is under test.
        dx = getattr(impl.ops, name + "_backward")(dy, y_ref.astype(impl.dtype), case.axis)
        dx_ref = getattr(ref, name + "_backward")(dy64, y_ref, case.axis)
        assert_dtype([dx], impl.dtype, where)
        assert_close(to_numpy(dx), dx_ref, impl.tol, f"{where} {name}_backward")


@pytest.mark.parametrize("impl", impls("softmax"), ids=str)
@given(case=softmax_cases(rank=2))
def test_softmax_cross_entropy(impl: Impl, case):
    logits, _, targets = case.arrays(impl.dtype)
    where = f"softmax_cross_entropy [{impl}] {case}"
    loss, dlogits = impl.ops.softmax_cross_entropy(logits, targets, -100)
    loss_ref, dlogits_ref = reference().softmax_cross_entropy(
        np.asarray(logits, np.float64), targets, -100
    )
    assert_dtype([loss, dlogits], impl.dtype, where)
    assert_close(to_numpy(loss), loss_ref, impl.tol, f"{where} loss")
    assert_close(to_numpy(dlogits), dlogits_ref, impl.tol, f"{where} dlogits")
