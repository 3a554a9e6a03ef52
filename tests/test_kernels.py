"""Every implementation of every op agrees with the float64 reference.

One property body per op (`check_<op>`), run over `harness.impls(family)`: every backend that
runs here, every version it holds, float32 and float64. A new backend or version joins these
tests by being registered, with no edit here. The inputs are built in the implementation's dtype
and the reference sees the same values in float64, so a float32 kernel is held to float32
rounding (1e-4 relative) and a float64 kernel to float64 rounding (1e-10).

Each body runs twice: `test_<op>` over the natively running implementations, and
`test_<op>_emulated` over those that run in an emulator (the Numba CUDA simulator, the CUDA C
emulation), with fewer and smaller cases because emulated threads are slow. A third test,
`test_<op>_block_edges`, runs the same body on every version that cuts its work into blocks or
tiles, at sizes on both sides of each block width (shapes.py, "Block edges"), in float64: the
drawn cases are too small to reach a second block.

Names: `x_dev` is the copy of x where the implementation computes (the device, for a GPU
backend); `dx` is always the gradient of x.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings

from harness import (
    Impl,
    assert_all_close,
    assert_close,
    assert_dtype,
    block_widths,
    impls,
    reference,
    to_numpy,
)
from shapes import (
    CellCase,
    ConvCase,
    PoolCase,
    cell_cases,
    cell_edge_cases,
    conv_cases,
    conv_edge_cases,
    linear_cases,
    linear_edge_cases,
    pool_cases,
    pool_edge_cases,
    softmax_cases,
    softmax_edge_cases,
)

EMULATED = settings(max_examples=6)


def edge_params(family: str, edge_cases) -> list:
    """pytest params (impl, case): every block-edge case of every float64 implementation of
    `family` whose version has blocks, native and emulated alike."""
    params = []
    for impl in impls(family, include_reference=True, emulated=None):
        widths = block_widths(impl)
        if impl.dtype != np.float64 or not widths:
            continue
        for case in edge_cases(widths):
            params.append(pytest.param(impl, case, id=f"{impl}-{case}"))
    return params


def f64(arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def host(arrays):
    return [to_numpy(a) for a in arrays]


# ----------------------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------------------


def check_conv2d(impl: Impl, case: ConvCase) -> None:
    x, w, b, dy = case.arrays(impl.dtype)
    x_dev, w_dev, b_dev, dy_dev = impl.put([x, w, b, dy])
    where = f"conv2d [{impl}] {case}"
    ref = reference()
    y = impl.ops.conv2d_forward(x_dev, w_dev, b_dev, case.stride, case.padding)
    y_ref = ref.conv2d_forward(*f64([x, w, b]), case.stride, case.padding)
    assert_dtype([y], impl.dtype, where)
    assert_close(to_numpy(y), y_ref, impl.tol, f"{where} forward y")

    grads = impl.ops.conv2d_backward(dy_dev, x_dev, w_dev, case.stride, case.padding)
    grads_ref = ref.conv2d_backward(*f64([dy, x, w]), case.stride, case.padding)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, ["dx", "dw", "db"], impl.tol, f"{where} backward")


@pytest.mark.parametrize("impl", impls("conv2d"), ids=str)
@given(case=conv_cases())
@example(case=ConvCase(1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), True, True, 0))  # 1x1 image
@example(case=ConvCase(1, 2, 3, 5, 4, 5, 4, (1, 1), (0, 0), True, True, 1))  # kernel = input
@example(case=ConvCase(2, 2, 2, 7, 7, 2, 2, (3, 3), (0, 0), False, False, 2))  # stride > kernel
@example(case=ConvCase(1, 1, 2, 3, 3, 3, 3, (2, 1), (1, 2), True, True, 3))  # padding
# 17 output rows: numba's blocked version cuts them into bands of 3, the last one partial;
# 5 channels in and out: two register tiles of 4, the second one partial.
@example(case=ConvCase(1, 5, 5, 17, 6, 3, 3, (1, 1), (1, 1), True, True, 4))
def test_conv2d(impl: Impl, case: ConvCase):
    check_conv2d(impl, case)


@pytest.mark.parametrize("impl", impls("conv2d", emulated=True), ids=str)
@EMULATED
@given(case=conv_cases(max_size=6, max_channels=2))
@example(case=ConvCase(1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), True, True, 0))  # 1x1 image
@example(case=ConvCase(1, 1, 2, 5, 4, 3, 2, (3, 2), (1, 1), True, False, 1))  # stride, padding
def test_conv2d_emulated(impl: Impl, case: ConvCase):
    check_conv2d(impl, case)


@pytest.mark.parametrize(("impl", "case"), edge_params("conv2d", conv_edge_cases))
def test_conv2d_block_edges(impl: Impl, case: ConvCase):
    check_conv2d(impl, case)


# ----------------------------------------------------------------------------------------------
# maxpool2d
# ----------------------------------------------------------------------------------------------


def check_maxpool2d(impl: Impl, case: PoolCase) -> None:
    x, dy = case.arrays(impl.dtype)
    x_dev, dy_dev = impl.put([x, dy])
    where = f"maxpool2d [{impl}] {case}"
    ref = reference()
    hyper = dict(kernel=case.kernel, stride=case.stride, padding=case.padding)
    y, argmax = impl.ops.maxpool2d_forward(x_dev, **hyper)
    y_ref, argmax_ref = ref.maxpool2d_forward(np.asarray(x, np.float64), **hyper)
    assert_dtype([y], impl.dtype, where)
    assert_close(to_numpy(y), y_ref, impl.tol, f"{where} forward y")
    np.testing.assert_array_equal(to_numpy(argmax), argmax_ref, err_msg=f"{where} argmax")

    dx = impl.ops.maxpool2d_backward(dy_dev, argmax, x.shape, **hyper)
    dx_ref = ref.maxpool2d_backward(np.asarray(dy, np.float64), argmax_ref, x.shape, **hyper)
    assert_dtype([dx], impl.dtype, where)
    assert_close(to_numpy(dx), dx_ref, impl.tol, f"{where} backward dx")


@pytest.mark.parametrize("impl", impls("maxpool2d"), ids=str)
@given(case=pool_cases())
@example(case=PoolCase(1, 1, 1, 1, (1, 1), (1, 1), (0, 0), True, 0))  # 1x1 image
@example(case=PoolCase(2, 2, 5, 3, (5, 3), (1, 1), (0, 0), True, 1))  # window = input
@example(case=PoolCase(1, 2, 8, 8, (2, 2), (3, 3), (0, 0), False, 2))  # stride > kernel
@example(case=PoolCase(1, 1, 5, 5, (3, 3), (1, 1), (1, 1), True, 3))  # overlap + padding
@example(case=PoolCase(1, 2, 4, 4, (2, 2), (1, 1), (0, 0), True, 4, "ties"))  # overlap, ties
@example(case=PoolCase(2, 1, 5, 5, (3, 3), (2, 2), (1, 1), True, 5, "neg_inf"))  # -inf windows
# The 2 x 2, stride 2 pooling of the report model, which a backend may run on a path of its own.
@example(case=PoolCase(2, 3, 6, 7, (2, 2), (2, 2), (0, 0), True, 6, "ties"))
@example(case=PoolCase(2, 3, 6, 7, (2, 2), (2, 2), (0, 0), False, 7, "neg_inf"))
def test_maxpool2d(impl: Impl, case: PoolCase):
    check_maxpool2d(impl, case)


@pytest.mark.parametrize("impl", impls("maxpool2d"), ids=str)
@pytest.mark.parametrize(
    "case",
    [
        PoolCase(2, 3, 6, 7, (2, 2), (2, 2), (0, 0), True, 8, "nan"),
        PoolCase(2, 2, 5, 5, (3, 3), (2, 2), (1, 1), True, 9, "nan"),
    ],
    ids=["2x2", "3x3 padded"],
)
def test_maxpool2d_nan_wins(impl: Impl, case: PoolCase):
    """A NaN in a window is its maximum (the last NaN in window order, as in PyTorch): the
    same outputs, NaN where the reference has NaN, and the same argmax."""
    x, _ = case.arrays(impl.dtype)
    hyper = dict(kernel=case.kernel, stride=case.stride, padding=case.padding)
    y, argmax = impl.ops.maxpool2d_forward(impl.put([x])[0], **hyper)
    y_ref, argmax_ref = reference().maxpool2d_forward(np.asarray(x, np.float64), **hyper)
    where = f"maxpool2d [{impl}] {case}"
    assert np.isnan(y_ref).any() and not np.isnan(y_ref).all(), f"{where}: a case without a mix"
    np.testing.assert_array_equal(to_numpy(y), y_ref.astype(impl.dtype), err_msg=where)
    np.testing.assert_array_equal(to_numpy(argmax), argmax_ref, err_msg=f"{where} argmax")


@pytest.mark.parametrize("impl", impls("maxpool2d", emulated=True), ids=str)
@EMULATED
@given(case=pool_cases(max_size=6))
@example(case=PoolCase(1, 1, 5, 5, (3, 3), (1, 1), (1, 1), True, 3))  # overlap + padding
@example(case=PoolCase(1, 2, 4, 4, (2, 2), (1, 1), (0, 0), True, 4, "ties"))  # overlap, ties
@example(case=PoolCase(2, 1, 5, 5, (3, 3), (2, 2), (1, 1), True, 5, "neg_inf"))  # -inf windows
def test_maxpool2d_emulated(impl: Impl, case: PoolCase):
    check_maxpool2d(impl, case)


@pytest.mark.parametrize(("impl", "case"), edge_params("maxpool2d", pool_edge_cases))
def test_maxpool2d_block_edges(impl: Impl, case: PoolCase):
    check_maxpool2d(impl, case)


# ----------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------


def check_linear(impl: Impl, case) -> None:
    x, w, b, dy = case.arrays(impl.dtype)
    x_dev, w_dev, b_dev, dy_dev = impl.put([x, w, b, dy])
    where = f"linear [{impl}] {case}"
    ref = reference()
    y = impl.ops.linear_forward(x_dev, w_dev, b_dev)
    assert_dtype([y], impl.dtype, where)
    assert_close(to_numpy(y), ref.linear_forward(*f64([x, w, b])), impl.tol, f"{where} y")
    grads = impl.ops.linear_backward(dy_dev, x_dev, w_dev)
    assert_dtype(grads, impl.dtype, where)
    grads_ref = ref.linear_backward(*f64([dy, x, w]))
    assert_all_close(host(grads), grads_ref, ["dx", "dw", "db"], impl.tol, f"{where} backward")


@pytest.mark.parametrize("impl", impls("linear"), ids=str)
@given(case=linear_cases())
def test_linear(impl: Impl, case):
    check_linear(impl, case)


@pytest.mark.parametrize("impl", impls("linear", emulated=True), ids=str)
@EMULATED
@given(case=linear_cases())
def test_linear_emulated(impl: Impl, case):
    check_linear(impl, case)


@pytest.mark.parametrize(("impl", "case"), edge_params("linear", linear_edge_cases))
def test_linear_block_edges(impl: Impl, case):
    check_linear(impl, case)


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


def check_rnn_tanh_cell(impl: Impl, case: CellCase) -> None:
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(1, impl.dtype)
    inputs = impl.put([x, h, w_ih, w_hh, b_ih, b_hh])
    where = f"rnn_tanh_cell [{impl}] {case}"
    ref = reference()
    h_new = impl.ops.rnn_tanh_cell_forward(*inputs)
    h_new_ref = ref.rnn_tanh_cell_forward(*f64([x, h, w_ih, w_hh, b_ih, b_hh]))
    assert_dtype([h_new], impl.dtype, where)
    assert_close(to_numpy(h_new), h_new_ref, impl.tol, f"{where} h_new")

    (dh_new_dev,) = impl.put([dh_new])
    grads = impl.ops.rnn_tanh_cell_backward(dh_new_dev, *inputs[:4], h_new)
    grads_ref = ref.rnn_tanh_cell_backward(*f64([dh_new, x, h, w_ih, w_hh]), h_new_ref)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, CELL_GRADS["rnn_tanh"], impl.tol, where)


def check_lstm_cell(impl: Impl, case: CellCase) -> None:
    x, h, c, w_ih, w_hh, b_ih, b_hh, dh_new, dc_new = case.arrays(4, impl.dtype)
    inputs = impl.put([x, h, c, w_ih, w_hh, b_ih, b_hh])
    where = f"lstm_cell [{impl}] {case}"
    ref = reference()
    h_new, c_new, cache = impl.ops.lstm_cell_forward(*inputs)
    h_ref, c_ref, cache_ref = ref.lstm_cell_forward(*f64([x, h, c, w_ih, w_hh, b_ih, b_hh]))
    assert_dtype([h_new, c_new, cache.gates], impl.dtype, where)
    assert_all_close(
        host([h_new, c_new, cache.gates, cache.tanh_c_new]),
        [h_ref, c_ref, cache_ref.gates, cache_ref.tanh_c_new],
        ["h_new", "c_new", "cache.gates", "cache.tanh_c_new"],
        impl.tol,
        f"{where} forward",
    )
    grads = impl.ops.lstm_cell_backward(*impl.put([dh_new, dc_new]), cache)
    grads_ref = ref.lstm_cell_backward(*f64([dh_new, dc_new]), cache_ref)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, CELL_GRADS["lstm"], impl.tol, f"{where} backward")


def check_gru_cell(impl: Impl, case: CellCase) -> None:
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(3, impl.dtype)
    inputs = impl.put([x, h, w_ih, w_hh, b_ih, b_hh])
    where = f"gru_cell [{impl}] {case}"
    ref = reference()
    h_new, cache = impl.ops.gru_cell_forward(*inputs)
    h_ref, cache_ref = ref.gru_cell_forward(*f64([x, h, w_ih, w_hh, b_ih, b_hh]))
    assert_dtype([h_new, cache.gates, cache.hn], impl.dtype, where)
    assert_all_close(
        host([h_new, cache.gates, cache.hn]),
        [h_ref, cache_ref.gates, cache_ref.hn],
        ["h_new", "cache.gates", "cache.hn"],
        impl.tol,
        f"{where} forward",
    )
    grads = impl.ops.gru_cell_backward(*impl.put([dh_new]), cache)
    grads_ref = ref.gru_cell_backward(np.asarray(dh_new, np.float64), cache_ref)
    assert_dtype(grads, impl.dtype, where)
    assert_all_close(host(grads), grads_ref, CELL_GRADS["gru"], impl.tol, f"{where} backward")


CELL_CHECKS = {"rnn_tanh": check_rnn_tanh_cell, "lstm": check_lstm_cell, "gru": check_gru_cell}


@pytest.mark.parametrize("cell", CELL_CHECKS)
@pytest.mark.parametrize("impl", impls("rnn"), ids=str)
@given(case=cell_cases())
@example(case=HIDDEN_1)
@example(case=SATURATED)
def test_rnn_cells(impl: Impl, cell: str, case: CellCase):
    CELL_CHECKS[cell](impl, case)


@pytest.mark.parametrize("cell", CELL_CHECKS)
@pytest.mark.parametrize("impl", impls("rnn", emulated=True), ids=str)
@EMULATED
@given(case=cell_cases())
@example(case=SATURATED)
def test_rnn_cells_emulated(impl: Impl, cell: str, case: CellCase):
    CELL_CHECKS[cell](impl, case)


@pytest.mark.parametrize("cell", CELL_CHECKS)
@pytest.mark.parametrize(("impl", "case"), edge_params("rnn", cell_edge_cases))
def test_rnn_cells_block_edges(impl: Impl, cell: str, case: CellCase):
    CELL_CHECKS[cell](impl, case)


# ----------------------------------------------------------------------------------------------
# softmax family
# ----------------------------------------------------------------------------------------------


def check_softmax_family(impl: Impl, case) -> None:
    x, dy, _ = case.arrays(impl.dtype)
    x_dev, dy_dev = impl.put([x, dy])
    where = f"softmax [{impl}] {case}"
    ref = reference()
    x64, dy64 = f64([x, dy])
    for name in ("softmax", "log_softmax"):
        y = getattr(impl.ops, name)(x_dev, case.axis)
        y_ref = getattr(ref, name)(x64, case.axis)
        assert_dtype([y], impl.dtype, where)
        assert_close(to_numpy(y), y_ref, impl.tol, f"{where} {name}")
        # The backward is fed the reference's y (cast), so only the backward is under test.
        (y_dev,) = impl.put([y_ref.astype(impl.dtype)])
        dx = getattr(impl.ops, name + "_backward")(dy_dev, y_dev, case.axis)
        dx_ref = getattr(ref, name + "_backward")(dy64, y_ref, case.axis)
        assert_dtype([dx], impl.dtype, where)
        assert_close(to_numpy(dx), dx_ref, impl.tol, f"{where} {name}_backward")


def check_softmax_cross_entropy(impl: Impl, case) -> None:
    logits, _, targets = case.arrays(impl.dtype)
    where = f"softmax_cross_entropy [{impl}] {case}"
    loss, dlogits = impl.ops.softmax_cross_entropy(*impl.put([logits, targets]), -100)
    loss_ref, dlogits_ref = reference().softmax_cross_entropy(
        np.asarray(logits, np.float64), targets, -100
    )
    assert_dtype([loss, dlogits], impl.dtype, where)
    assert_close(to_numpy(loss), loss_ref, impl.tol, f"{where} loss")
    assert_close(to_numpy(dlogits), dlogits_ref, impl.tol, f"{where} dlogits")


@pytest.mark.parametrize("impl", impls("softmax"), ids=str)
@given(case=softmax_cases())
def test_softmax_family(impl: Impl, case):
    check_softmax_family(impl, case)


@pytest.mark.parametrize("impl", impls("softmax", emulated=True), ids=str)
@EMULATED
@given(case=softmax_cases())
def test_softmax_family_emulated(impl: Impl, case):
    check_softmax_family(impl, case)


@pytest.mark.parametrize("impl", impls("softmax"), ids=str)
@given(case=softmax_cases(rank=2))
def test_softmax_cross_entropy(impl: Impl, case):
    check_softmax_cross_entropy(impl, case)


@pytest.mark.parametrize("impl", impls("softmax", emulated=True), ids=str)
@EMULATED
@given(case=softmax_cases(rank=2))
def test_softmax_cross_entropy_emulated(impl: Impl, case):
    check_softmax_cross_entropy(impl, case)


# The Numba CPU "parallel" version hands calls of fewer than PARALLEL_FROM elements to its naive
# kernels (a thread pool's wake-up costs more than such a call). Every drawn case above is that
# small, so here the threshold is 0 and the same cases reach the parallel kernels themselves.
PARALLEL_SOFTMAX = [i for i in impls("softmax") if (i.backend, i.version) == ("numba", "parallel")]


@pytest.mark.parametrize("impl", PARALLEL_SOFTMAX, ids=str)
@settings(max_examples=30)
@given(case=softmax_cases())
def test_softmax_parallel_kernels_on_small_inputs(impl: Impl, case):
    from unittest import mock

    from minirad.kernels.softmax import numba_cpu

    with mock.patch.object(numba_cpu, "PARALLEL_FROM", 0):
        check_softmax_family(impl, case)
        if len(case.shape) == 2:
            check_softmax_cross_entropy(impl, case)


def test_softmax_runs_one_thread_below_its_threshold_and_all_cores_above():
    from minirad.kernels.softmax import numba_cpu

    kernel = numba_cpu._by_size(lambda x: "parallel", lambda x: "serial")
    n = numba_cpu.PARALLEL_FROM
    assert kernel(np.zeros(n - 1)) == "serial"
    assert kernel(np.zeros(n)) == "parallel"


@pytest.mark.parametrize(("impl", "case"), edge_params("softmax", softmax_edge_cases))
def test_softmax_block_edges(impl: Impl, case):
    check_softmax_family(impl, case)
    check_softmax_cross_entropy(impl, case)
