"""Empty inputs on the CUDA C backend: correct empty results, and never a launch a GPU refuses.

CUDA refuses a grid with a 0 dimension ("invalid configuration argument"), which the emulation
used to run; the launch validator (runtime/launch_check.py) now refuses it there too. So every
empty input the contract accepts (a batch of 0, 0 channels, 0 features) is run here through the
cuda_c_cpu backend, every version, and must give the reference's results: empty arrays of the
right shape, and zeros where a gradient sums over the empty dimension (dw, db for N = 0).
The softmax family's contract refuses empty inputs; that refusal is checked too.
"""

from __future__ import annotations

import numpy as np
import pytest

from minirad import kernels
from minirad.kernels.runtime import cuda_c_cpu
from minirad.kernels.runtime.cuda_c_runtimes import emulation
from minirad.kernels.softmax import cuda_c as softmax_host

pytestmark = pytest.mark.skipif(cuda_c_cpu.compiler() is None, reason="g++ not found")

REFERENCE = kernels.get("numpy")
VERSIONS = kernels.get("cuda_c_cpu").versions


def emulated(family: str, version: str) -> kernels.Ops:
    return kernels.get("cuda_c_cpu", **{family: version})


def arrays(*shapes: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def assert_same(got, expected, what: str) -> None:
    """Equal nested results: same shapes, dtypes and values (NamedTuple caches included)."""
    if isinstance(expected, tuple):
        assert len(got) == len(expected), what
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{what}[{i}]")
        return
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, expected {expected.dtype}"
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=what)


# x (N, C, H, W) and w (K, C, R, S): an empty batch, no output channels, no input channels
CONV_CASES = {
    "batch-0": ((0, 2, 5, 5), (3, 2, 3, 3)),
    "channels-out-0": ((2, 2, 5, 5), (0, 2, 3, 3)),
    "channels-in-0": ((2, 0, 5, 5), (3, 0, 3, 3)),
}


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("version", VERSIONS["conv2d"])
def test_conv2d_of_an_empty_input(version, case):
    x_shape, w_shape = CONV_CASES[case]
    x, w, b = arrays(x_shape, w_shape, (w_shape[0],))
    ops = emulated("conv2d", version)
    y = REFERENCE.conv2d_forward(x, w, b, stride=2, padding=1)
    assert_same(ops.conv2d_forward(x, w, b, stride=2, padding=1), y, f"{case} forward")
    (dy,) = arrays(y.shape, seed=1)
    expected = REFERENCE.conv2d_backward(dy, x, w, stride=2, padding=1)
    got = ops.conv2d_backward(dy, x, w, stride=2, padding=1)
    assert_same(got, expected, f"{case} backward (dx, dw, db)")


@pytest.mark.parametrize("x_shape", [(0, 2, 4, 4), (2, 0, 4, 4)], ids=["batch-0", "channels-0"])
@pytest.mark.parametrize("version", VERSIONS["maxpool2d"])
def test_maxpool2d_of_an_empty_input(version, x_shape):
    (x,) = arrays(x_shape)
    ops = emulated("maxpool2d", version)
    y, argmax = REFERENCE.maxpool2d_forward(x, kernel=2)
    assert_same(ops.maxpool2d_forward(x, kernel=2), (y, argmax), "forward (y, argmax)")
    (dy,) = arrays(y.shape, seed=1)
    expected = REFERENCE.maxpool2d_backward(dy, argmax, x.shape, kernel=2)
    assert_same(ops.maxpool2d_backward(dy, argmax, x.shape, kernel=2), expected, "backward")


# x (N, in) and w (out, in)
LINEAR_CASES = {"batch-0": ((0, 3), (4, 3)), "out-0": ((2, 3), (0, 3)), "in-0": ((2, 0), (4, 0))}


@pytest.mark.parametrize("case", LINEAR_CASES)
@pytest.mark.parametrize("version", VERSIONS["linear"])
def test_linear_of_an_empty_input(version, case):
    x_shape, w_shape = LINEAR_CASES[case]
    x, w, b = arrays(x_shape, w_shape, (w_shape[0],))
    ops = emulated("linear", version)
    y = REFERENCE.linear_forward(x, w, b)
    assert_same(ops.linear_forward(x, w, b), y, f"{case} forward")
    (dy,) = arrays(y.shape, seed=1)
    got, expected = ops.linear_backward(dy, x, w), REFERENCE.linear_backward(dy, x, w)
    assert_same(got, expected, f"{case} backward (dx, dw, db)")


def cell_arguments(gates: int, B: int = 0, I: int = 3, H: int = 4) -> list[np.ndarray]:
    """x (B, I), h (B, H), w_ih (G*H, I), w_hh (G*H, H), b_ih, b_hh (G*H,): an empty batch."""
    return arrays((B, I), (B, H), (gates * H, I), (gates * H, H), (gates * H,), (gates * H,))


@pytest.mark.parametrize("version", VERSIONS["rnn"])
def test_the_recurrent_cells_of_an_empty_batch(version):
    ops = emulated("rnn", version)
    x, h, w_ih, w_hh, b_ih, b_hh = cell_arguments(gates=1)
    h_new = REFERENCE.rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    assert_same(ops.rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh), h_new, "rnn forward")
    expected = REFERENCE.rnn_tanh_cell_backward(h_new, x, h, w_ih, w_hh, h_new)
    got = ops.rnn_tanh_cell_backward(h_new, x, h, w_ih, w_hh, h_new)
    assert_same(got, expected, "rnn backward")

    x, h, w_ih, w_hh, b_ih, b_hh = cell_arguments(gates=4)
    expected = REFERENCE.lstm_cell_forward(x, h, h, w_ih, w_hh, b_ih, b_hh)
    got = ops.lstm_cell_forward(x, h, h, w_ih, w_hh, b_ih, b_hh)
    assert_same(got, expected, "lstm forward (h_new, c_new, cache)")
    h_new, c_new, cache = got
    expected = REFERENCE.lstm_cell_backward(h_new, c_new, expected[2])
    assert_same(ops.lstm_cell_backward(h_new, c_new, cache), expected, "lstm backward")

    x, h, w_ih, w_hh, b_ih, b_hh = cell_arguments(gates=3)
    expected = REFERENCE.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    got = ops.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    assert_same(got, expected, "gru forward (h_new, cache)")
    h_new, cache = got
    expected = REFERENCE.gru_cell_backward(h_new, expected[1])
    assert_same(ops.gru_cell_backward(h_new, cache), expected, "gru backward")


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_the_softmax_contract_refuses_an_empty_input(op):
    """Nothing is launched for an empty softmax: the contract refuses it, on every backend."""
    ops = emulated("softmax", "block")
    with pytest.raises(ValueError, match="empty dimension"):
        getattr(ops, op)(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="empty dimension"):
        ops.softmax_cross_entropy(np.zeros((0, 5)), np.zeros(0, dtype=np.int64))


@pytest.mark.parametrize("version", VERSIONS["softmax"])
def test_the_softmax_host_code_launches_a_legal_grid_for_no_rows(version):
    """Past the contract (called directly, as the host code's own tests may), 0 rows still make
    a legal launch: the block kernels' grid is one block per row, at least one (r >= rows
    returns)."""
    softmax = softmax_host.make_versions(emulation())[version]["softmax"]
    assert softmax(np.zeros((0, 5)), 1).shape == (0, 5)
