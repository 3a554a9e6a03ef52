"""The engine: the tape, backward, gradient accumulation, no_grad, gradcheck, backend switching."""

from __future__ import annotations

import numpy as np
import pytest

from minirad import backend, kernels
from minirad import functional as F
from minirad.autograd import (
    Function,
    GradcheckError,
    Tensor,
    gradcheck,
    no_grad,
    stack,
    to_host,
)

rng = np.random.default_rng(0)


def leaf(*shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def test_square_sum_gradient():
    x = leaf(3, 4)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)


def test_gradients_accumulate_over_uses_and_calls():
    x = leaf(2)
    (x * 3 + x).sum().backward()  # x used twice in one graph
    np.testing.assert_allclose(x.grad, [4.0, 4.0])
    (x * 1).sum().backward()  # a second graph adds, as in PyTorch
    np.testing.assert_allclose(x.grad, [5.0, 5.0])


def test_backward_twice_through_one_graph_is_an_error():
    x = leaf(2)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already used by a backward pass and freed"):
        y.backward()


def test_backward_of_non_scalar_needs_a_gradient():
    with pytest.raises(RuntimeError, match="pass the gradient of a non-scalar"):
        (leaf(2, 2) * 2).backward()


def test_no_grad_records_nothing():
    x = leaf(3)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: (a * b + a / (b * b + 1.0)).sum(axis=1),
        lambda a, b: (a @ b.T).tanh().sigmoid().log(),
        lambda a, b: (a - b.mean(axis=0, keepdims=True)).exp()[1:, ::2] ** 2,
        lambda a, b: stack([a.relu(), b], axis=1).reshape(-1).sum(),
    ],
    ids=["arith-broadcast", "matmul-activations", "slicing-pow", "stack-reshape"],
)
def test_gradcheck_of_composite_expressions(fn):
    assert gradcheck(fn, [leaf(3, 4), leaf(3, 4)])


def test_gradcheck_reports_a_wrong_backward():
    class WrongSquare(Function):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, grad):
            return grad * self.a  # should be 2 * a

    with pytest.raises(GradcheckError, match=r"inputs\[0\] shape \(2, 3\).*worst element") as e:
        gradcheck(lambda a: WrongSquare.apply(a), [leaf(2, 3)])
    assert "np.float64" not in str(e.value)  # plain numbers, readable in a notebook


def test_gradcheck_refuses_float32():
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda a: a * 2, [Tensor(np.ones(2, np.float32), requires_grad=True)])


CPU_BACKENDS = [name for name in ("numpy", "numba") if kernels.why_unavailable(name) is None]


@pytest.mark.parametrize("name", CPU_BACKENDS)  # gradchecks need many calls: CPU backends only
def test_kernel_functions_gradcheck(name):
    with backend.use_backend(name):
        x, w, b = leaf(2, 2, 5, 5), leaf(3, 2, 3, 3), leaf(3)
        assert gradcheck(lambda x, w, b: F.max_pool2d(F.conv2d(x, w, b, padding=1), 2), [x, w, b])
        x, h, c, w_ih, w_hh, b_ih, b_hh = (
            leaf(2, 3),
            leaf(2, 4),
            leaf(2, 4),
            *(leaf(16, 3), leaf(16, 4), leaf(16), leaf(16)),
        )
        assert gradcheck(
            lambda *a: F.lstm_cell(*a)[0] + 2 * F.lstm_cell(*a)[1],
            [x, h, c, w_ih, w_hh, b_ih, b_hh],
        )
        logits, targets = leaf(5, 7), np.array([1, 2, -100, 0, 6])
        assert gradcheck(lambda z: F.cross_entropy(z, targets) + F.softmax(z)[0, 1], [logits])


def test_use_backend_as_context_manager_restores():
    before = backend.active().name
    with backend.use_backend("numpy") as ops:
        assert ops.name == "numpy" == backend.active().name
    assert backend.active().name == before


class _RefusingBackend:
    """A backend that fails on any op: what the backward pass must not ask for."""

    name = "refusing"

    def __getattr__(self, op):
        raise AssertionError(f"{op} was asked of the backend active at backward time")


def test_backward_runs_on_the_backend_that_ran_the_forward(monkeypatch):
    x, w, b = leaf(2, 1, 4, 4), leaf(2, 1, 3, 3), leaf(2)
    with backend.use_backend("numpy"):
        y = F.max_pool2d(F.conv2d(x, w, b, padding=1), 2)
        loss = F.cross_entropy(F.linear(y.reshape(2, 8), leaf(3, 8)), np.array([0, 2]))
    assert loss._creator.kernels.name == "numpy"  # the tape remembers it
    # Switched between forward and backward: the backward must not mix in the new backend.
    monkeypatch.setattr(backend, "active", lambda: _RefusingBackend())
    loss.backward()
    assert x.grad is not None and w.grad is not None and b.grad is not None


def test_auto_prefers_a_fast_backend_here():
    expected = "numba" if kernels.why_unavailable("numba") is None else "numpy"
    if kernels.why_unavailable("cupy") is None:
        expected = "cupy"
    assert backend.resolve("auto") == expected


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backend.use_backend("tpu")


def test_python_numbers_keep_float32():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (x - 0.5, 0.5 - x, x / 2.0, 2.0 / x, x * 2.0, x + 1, x**2):
        assert y.dtype == np.float32, f"{y.dtype} from float32 and a Python number"
    (x / 2.0 - 0.5).sum().backward()
    assert x.grad.dtype == np.float32


class _CupyLike:
    """Stands in for a cupy.ndarray: the host copy comes from .get()."""

    def __init__(self, data):
        self.data = data

    def get(self):
        return self.data.copy()


class _NumbaDeviceLike:
    """Stands in for numba.cuda's DeviceNDArray: the host copy comes from .copy_to_host()."""

    def __init__(self, data):
        self.data = data

    def copy_to_host(self):
        return self.data.copy()


def test_to_host_brings_every_kind_of_array_back_as_numpy():
    host = np.arange(6.0).reshape(2, 3)
    assert to_host(host) is host  # already on the host: no copy
    for device in (_CupyLike(host), _NumbaDeviceLike(host)):
        back = to_host(device)
        assert isinstance(back, np.ndarray)
        np.testing.assert_array_equal(back, host)
    assert to_host(3).shape == () and to_host([1, 2]).tolist() == [1, 2]


@pytest.mark.skipif(kernels.why_unavailable("cuda") is not None, reason="no numba.cuda here")
def test_to_host_copies_a_numba_device_array():
    from numba import cuda

    host = np.arange(4.0)
    np.testing.assert_array_equal(to_host(cuda.to_device(host)), host)
