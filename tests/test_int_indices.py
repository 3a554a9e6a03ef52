"""The CUDA C host code refuses arrays its kernels' 32-bit int indices cannot reach.

Every .cu indexes with `int`: an array of more than about 2^31 elements would wrap around to
negative indices and read or write outside the buffer, silently, on a GPU. So every op's host
code (cuda_c.py) checks the sizes with grids.check_int_indices, from the shapes alone, before
it copies or allocates anything, and raises a ValueError naming the array.

The inputs here are broadcast views (np.broadcast_to: 2^31 elements, no memory), and the host
code runs on a runtime whose array module refuses to allocate anything large and whose kernels
are only recorded (kernels/runtime/launch_record.py). Host code without the check fails these
tests by trying to copy the view (an AssertionError from the refusing array module), which is
how each of them was first seen to fail, for linear, maxpool2d, softmax and rnn (conv2d checked
only after its copies).
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import pytest

from minirad.kernels._check import GRUCache, LSTMCache
from minirad.kernels.runtime import grids
from minirad.kernels.runtime.launch_record import cuda_c_ops, recording_runtime

TOO_MANY = 2**31  # elements: past grids.MAX_INT_INDEXED
MOST_BYTES = 2**26  # what the refusing array module allows one allocation


class SmallAllocationsOnly(types.ModuleType):
    """NumPy, but an allocation or copy of more than MOST_BYTES raises AssertionError."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def _allow(shape, dtype) -> None:
        shape = (shape,) if isinstance(shape, int) else shape
        size = math.prod(shape) * np.dtype(dtype).itemsize
        assert size <= MOST_BYTES, f"the host code allocates {size} bytes {shape}"

    def empty(self, shape, dtype=float):
        self._allow(shape, dtype)
        return np.zeros(shape, dtype)

    zeros = empty

    def empty_like(self, a, dtype=None):
        self._allow(a.shape, dtype or a.dtype)
        return np.zeros_like(a, dtype=dtype)

    def ascontiguousarray(self, a, dtype=None):
        if not (a.flags.c_contiguous and (dtype is None or a.dtype == dtype)):
            self._allow(a.shape, dtype or a.dtype)
        return np.ascontiguousarray(a, dtype=dtype)


def host_code(**versions: str):
    """The CUDA C host code on the refusing array module, its launches only recorded."""
    runtime = recording_runtime([])
    return cuda_c_ops(dataclasses.replace(runtime, xp=SmallAllocationsOnly("numpy")), **versions)


@pytest.fixture
def ops():
    return host_code()


def huge(*shape: int, dtype=np.float32) -> np.ndarray:
    """A read-only view of zeros of `shape`, whatever its size, in no memory."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def small(*shape: int, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def refused(call, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match="int indices reach"):
        call(*args, **kwargs)


def test_the_views_have_more_elements_than_int_indices_reach():
    assert huge(2**16, 2**15).size == TOO_MANY > grids.MAX_INT_INDEXED


def test_the_limit_itself_is_accepted():
    grids.check_int_indices("linear.cu", x=grids.MAX_INT_INDEXED)
    refused(grids.check_int_indices, "linear.cu", x=grids.MAX_INT_INDEXED + 1)


def test_conv2d(ops):
    x = huge(2**11, 1, 2**10, 2**10)
    refused(ops.conv2d_forward, x, small(1, 1, 1, 1), None)
    refused(ops.conv2d_backward, x, x, small(1, 1, 1, 1))


def test_linear(ops):
    refused(ops.linear_forward, huge(2**16, 2**15), small(2, 2**15), None)
    # dy (N, out) of 2^31 elements, the inputs small enough
    refused(ops.linear_backward, huge(2**16, 2**15), small(2**16, 2), small(2**15, 2))


def test_linear_output(ops):
    """y = x @ w.T of (2^16, 2^15) from two small inputs: the output alone is too large."""
    refused(ops.linear_forward, small(2**16, 1), small(2**15, 1), None)


@pytest.mark.parametrize("version", ["atomic", "gather"])
def test_maxpool2d(version):
    ops = host_code(maxpool2d=version)
    x = huge(2**11, 2**10, 32, 32)
    refused(ops.maxpool2d_forward, x, 2)
    dy, argmax = huge(2**11, 2**10, 16, 16), huge(2**11, 2**10, 16, 16, dtype=np.int64)
    refused(ops.maxpool2d_backward, dy, argmax, x.shape, 2)


def test_softmax(ops):
    x = huge(2**16, 2**15)
    refused(ops.softmax, x)
    refused(ops.log_softmax, x)
    refused(ops.softmax_backward, x, x)
    refused(ops.log_softmax_backward, x, x)
    refused(ops.softmax_cross_entropy, x, small(2**16, dtype=np.int64))


@pytest.mark.parametrize("version", ["naive", "fused"])
def test_recurrent_cells(version):
    """H = 2^13 units: x, h and the weights fit, the (B, G*H) gates do not, for B = 2^16
    (LSTM, G = 4), 2^17 (GRU, G = 3) and 2^18 (tanh-RNN, G = 1)."""
    ops = host_code(rnn=version)
    I, H = 1, 2**13
    B = 2**16
    x, h = huge(B, I), huge(B, H)
    w_ih, w_hh, bias = huge(4 * H, I), huge(4 * H, H), small(4 * H)
    refused(ops.lstm_cell_forward, x, h, h, w_ih, w_hh, bias, bias)
    refused(ops.lstm_cell_backward, h, h, LSTMCache(x, h, h, w_ih, w_hh, huge(B, 4 * H), h))
    B = 2**17
    x, h = huge(B, I), huge(B, H)
    w_ih, w_hh, bias = huge(3 * H, I), huge(3 * H, H), small(3 * H)
    refused(ops.gru_cell_forward, x, h, w_ih, w_hh, bias, bias)
    refused(ops.gru_cell_backward, h, GRUCache(x, h, w_ih, w_hh, huge(B, 3 * H), h))
    B = 2**18
    x, h = huge(B, I), huge(B, H)
    w_ih, w_hh, bias = huge(H, I), huge(H, H), small(H)
    refused(ops.rnn_tanh_cell_forward, x, h, w_ih, w_hh, bias, bias)
    refused(ops.rnn_tanh_cell_backward, h, x, h, w_ih, w_hh, h)
