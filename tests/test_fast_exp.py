"""The Numba kernels' float32 exp (kernels/rnn/numba_cpu.py _exp_nonpositive32) keeps its
stated bound against np.exp in float64: 1e-7 relative where exp(x) is a normal float32, 1.2e-38
absolute below that (it returns 0 where the result would be a denormal), exactly 1 at 0 and
-0.0. Checked both as a plain compiled loop and through the softmax kernels' reduction loop
(compiled with reassoc: the flag must not reach the exp's range reduction), and float64 stays
np.exp as Numba compiles it, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from minirad.kernels.rnn.numba_cpu import fast_exp_nonpositive  # noqa: E402
from minirad.kernels.softmax.numba_cpu import _exp_shifted_into  # noqa: E402

STATED_RELATIVE = 1e-7
STATED_ABSOLUTE_BELOW_NORMAL = 1.2e-38
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


@njit(error_model="numpy")
def _exp_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = fast_exp_nonpositive(x[j])


@njit(error_model="numpy")
def _np_exp_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = np.exp(x[j])


def _grid() -> np.ndarray:
    """A dense float32 grid of [-100, 0] with the edges: both zeros, the smallest steps below
    0, every float32 around the underflow edge ln(2^-126) = -87.336544, very negative values."""
    dense = np.linspace(-100.0, 0.0, 2_000_001).astype(np.float32)
    below_zero = -np.arange(0, 4096, dtype=np.int32).view(np.float32)  # 0, -denormals, ...
    near_one = np.float32(-1.0) * np.spacing(np.float32(1.0)) * np.arange(4096, dtype=np.float32)
    edge = np.float32(-87.336544)
    around_edge = edge + np.spacing(edge) * np.arange(-2048, 2049, dtype=np.float32)
    specials = np.array([0.0, -0.0, -87.3, -88.0, -103.97, -104.0, -150.0, -1e4, -1e30, -3e38],
                        dtype=np.float32)  # fmt: skip
    return np.concatenate([specials, dense, below_zero, near_one, around_edge])


def _check_bound(x: np.ndarray, y: np.ndarray, how: str) -> None:
    assert y.dtype == np.float32
    exact = np.exp(x.astype(np.float64))
    error = np.abs(y.astype(np.float64) - exact)
    normal = exact >= SMALLEST_NORMAL
    relative = error[normal] / exact[normal]
    worst = int(np.argmax(relative))
    assert relative[worst] <= STATED_RELATIVE, (
        f"{how}: relative error {relative[worst]:.3g} at x = {x[normal][worst]!r}"
    )
    if (~normal).any():
        assert error[~normal].max() <= STATED_ABSOLUTE_BELOW_NORMAL, how
        assert np.all(y[~normal] >= 0), how


@pytest.mark.parametrize("path", ["loop", "softmax row"])
def test_float32_exp_within_its_stated_error(path):
    x = _grid()
    y = np.empty_like(x)
    if path == "loop":
        _exp_loop(x, y)
    else:
        total = _exp_shifted_into(x, np.float32(0), y)  # y = exp(x - 0)
        assert total == pytest.approx(np.exp(x.astype(np.float64)).sum(), rel=1e-5)
    _check_bound(x, y, path)
    zeros = np.array([0.0, -0.0], dtype=np.float32)
    ones = np.empty_like(zeros)
    _exp_loop(zeros, ones)
    assert np.array_equal(ones, [1.0, 1.0])


def test_float32_exp_edges():
    x = np.array([-np.inf, -1e30, -88.0, np.nan], dtype=np.float32)
    y = np.empty_like(x)
    _exp_loop(x, y)
    assert np.array_equal(y[:3], [0.0, 0.0, 0.0])
    assert np.isnan(y[3])


def test_float64_keeps_np_exp_exactly():
    """float64 is Numba's np.exp (libm's exp; NumPy's own SIMD exp may differ in the last bit)."""
    x = np.linspace(-745.0, 0.0, 100_001)
    y, expected = np.empty_like(x), np.empty_like(x)
    _exp_loop(x, y)
    _np_exp_loop(x, expected)
    assert np.array_equal(y, expected)
    np.testing.assert_allclose(y, np.exp(x), rtol=1e-15, atol=0)
