"""The reference against PyTorch, float64, every op forward and backward (rel. error < 1e-10).

PyTorch is the oracle here: an independent implementation of the same conventions. The
backward of each op is compared with autograd's, seeded with the same upstream gradient dy,
i.e. both compute the vector-Jacobian product dy^T J. Skipped cleanly when torch is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from harness import assert_all_close, assert_close, reference
from shapes import cell_cases, conv_cases, linear_cases, pool_cases, softmax_cases

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = (1e-10, 1.0)  # rtol and scale floor, see harness.SCALE_FLOOR


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def grads_of(output, dy, inputs):
    """dy^T J for each input: autograd's backward seeded with dy."""
    output.backward(torch.tensor(np.ascontiguousarray(dy)))
    return [t.grad.numpy() for t in inputs]


@given(case=conv_cases())
def test_conv2d_vs_torch(case):
    x, w, b, dy = case.arrays(np.float64)
    where = f"conv2d [numpy vs torch] {case}"
    ref = reference()
    tx, tw = leaf(x), leaf(w)
    tb = leaf(b) if b is not None else None
    ty = F.conv2d(tx, tw, tb, stride=case.stride, padding=case.padding)
    assert_close(
        ref.conv2d_forward(x, w, b, case.stride, case.padding),
        ty.detach().numpy(),
        RTOL,
        f"{where} y",
    )
    inputs = [tx, tw] if tb is None else [tx, tw, tb]
    expected = grads_of(ty, dy, inputs)
    if tb is None:  # no bias in torch's graph: db is still defined as the sum of dy
        expected.append(dy.sum(axis=(0, 2, 3)))
    got = ref.conv2d_backward(dy, x, w, case.stride, case.padding)
    assert_all_close(got, expected, ["dx", "dw", "db"], RTOL, where)


@given(case=pool_cases())
def test_maxpool2d_vs_torch(case):
    x, dy = case.arrays(np.float64)
    where = f"maxpool2d [numpy vs torch] {case}"
    hyper = dict(kernel=case.kernel, stride=case.stride, padding=case.padding)
    tx = leaf(x)
    ty, tidx = F.max_pool2d(tx, case.kernel, case.stride, case.padding, return_indices=True)
    y, argmax = reference().maxpool2d_forward(x, **hyper)
    assert_close(y, ty.detach().numpy(), RTOL, f"{where} y")
    np.testing.assert_array_equal(argmax, tidx.numpy(), err_msg=f"{where} argmax")
    (dx_expected,) = grads_of(ty, dy, [tx])
    dx = reference().maxpool2d_backward(dy, argmax, x.shape, **hyper)
    assert_close(dx, dx_expected, RTOL, f"{where} dx")


@given(case=linear_cases())
def test_linear_vs_torch(case):
    x, w, b, dy = case.arrays(np.float64)
    where = f"linear [numpy vs torch] {case}"
    tx, tw = leaf(x), leaf(w)
    ty = F.linear(tx, tw, leaf(b) if b is not None else None)
    assert_close(reference().linear_forward(x, w, b), ty.detach().numpy(), RTOL, f"{where} y")
    dx, dw = grads_of(ty, dy, [tx, tw])
    got = reference().linear_backward(dy, x, w)
    assert_all_close(got, [dx, dw, dy.sum(axis=0)], ["dx", "dw", "db"], RTOL, where)


def torch_cell(kind: str, I: int, H: int, w_ih, w_hh, b_ih, b_hh):
    cls = {"rnn_tanh": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind]
    cell = cls(I, H).double()
    with torch.no_grad():
        for name, value in [
            ("weight_ih", w_ih),
            ("weight_hh", w_hh),
            ("bias_ih", b_ih),
            ("bias_hh", b_hh),
        ]:
            getattr(cell, name).copy_(torch.tensor(value))
    return cell


def cell_param_grads(cell):
    return [
        cell.weight_ih.grad.numpy(),
        cell.weight_hh.grad.numpy(),
        cell.bias_ih.grad.numpy(),
        cell.bias_hh.grad.numpy(),
    ]


@given(case=cell_cases())
def test_rnn_tanh_cell_vs_torch(case):
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(1, np.float64)
    where = f"rnn_tanh_cell [numpy vs torch] {case}"
    cell = torch_cell("rnn_tanh", case.I, case.H, w_ih, w_hh, b_ih, b_hh)
    tx, th = leaf(x), leaf(h)
    t_h_new = cell(tx, th)
    h_new = reference().rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    assert_close(h_new, t_h_new.detach().numpy(), RTOL, f"{where} h_new")
    expected = grads_of(t_h_new, dh_new, [tx, th]) + cell_param_grads(cell)
    got = reference().rnn_tanh_cell_backward(dh_new, x, h, w_ih, w_hh, h_new)
    assert_all_close(got, expected, ["dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"], RTOL, where)


@given(case=cell_cases())
def test_lstm_cell_vs_torch(case):
    x, h, c, w_ih, w_hh, b_ih, b_hh, dh_new, dc_new = case.arrays(4, np.float64)
    where = f"lstm_cell [numpy vs torch] {case}"
    cell = torch_cell("lstm", case.I, case.H, w_ih, w_hh, b_ih, b_hh)
    tx, th, tc = leaf(x), leaf(h), leaf(c)
    t_h_new, t_c_new = cell(tx, (th, tc))
    h_new, c_new, cache = reference().lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    assert_close(h_new, t_h_new.detach().numpy(), RTOL, f"{where} h_new")
    assert_close(c_new, t_c_new.detach().numpy(), RTOL, f"{where} c_new")
    # One backward through both outputs: L = <dh_new, h_new> + <dc_new, c_new>.
    loss = (t_h_new * torch.tensor(dh_new)).sum() + (t_c_new * torch.tensor(dc_new)).sum()
    loss.backward()
    expected = [tx.grad.numpy(), th.grad.numpy(), tc.grad.numpy()] + cell_param_grads(cell)
    got = reference().lstm_cell_backward(dh_new, dc_new, cache)
    names = ["dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    assert_all_close(got, expected, names, RTOL, where)


@given(case=cell_cases())
def test_gru_cell_vs_torch(case):
    x, h, _, w_ih, w_hh, b_ih, b_hh, dh_new, _ = case.arrays(3, np.float64)
    where = f"gru_cell [numpy vs torch] {case}"
    cell = torch_cell("gru", case.I, case.H, w_ih, w_hh, b_ih, b_hh)
    tx, th = leaf(x), leaf(h)
    t_h_new = cell(tx, th)
    h_new, cache = reference().gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    assert_close(h_new, t_h_new.detach().numpy(), RTOL, f"{where} h_new")
    expected = grads_of(t_h_new, dh_new, [tx, th]) + cell_param_grads(cell)
    got = reference().gru_cell_backward(dh_new, cache)
    assert_all_close(got, expected, ["dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"], RTOL, where)


@given(case=softmax_cases())
def test_softmax_family_vs_torch(case):
    x, dy, _ = case.arrays(np.float64)
    where = f"softmax [numpy vs torch] {case}"
    for name, torch_fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        tx = leaf(x)
        ty = torch_fn(tx, dim=case.axis)
        y = getattr(reference(), name)(x, case.axis)
        assert_close(y, ty.detach().numpy(), RTOL, f"{where} {name}")
        (dx_expected,) = grads_of(ty, dy, [tx])
        dx = getattr(reference(), name + "_backward")(dy, y, case.axis)
        assert_close(dx, dx_expected, RTOL, f"{where} {name}_backward")


@given(case=softmax_cases(rank=2))
def test_softmax_cross_entropy_vs_torch(case):
    logits, _, targets = case.arrays(np.float64)
    if np.all(targets == -100):
        return  # PyTorch's mean over zero rows is nan; ours is 0 (tested in test_invariants)
    where = f"softmax_cross_entropy [numpy vs torch] {case}"
    t_logits = leaf(logits)
    t_loss = F.cross_entropy(t_logits, torch.tensor(targets), ignore_index=-100)
    t_loss.backward()
    loss, dlogits = reference().softmax_cross_entropy(logits, targets, -100)
    assert_close(loss, t_loss.detach().numpy(), RTOL, f"{where} loss")
    assert_close(dlogits, t_logits.grad.numpy(), RTOL, f"{where} dlogits")
