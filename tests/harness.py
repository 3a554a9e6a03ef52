"""What every kernel test shares: which implementations exist, and how two results are compared.

An *implementation* is one version of one op folder on one backend in one dtype, e.g.
``Impl("numba", "conv2d", "blocked", float32)``. `impls(family)` lists all of them that can
run on this machine, so a property test parametrized over it picks up a new backend or a new
version without being edited: that is how later backends join the reference's tests.

`assert_close` compares with a *relative* error, max|actual - expected| / max|expected|, the
norm-wise measure of numerical linear algebra: elementwise relative error is meaningless for
outputs that are sums with cancellation (a convolution output near zero). On failure it says
which op, backend, version, dtype and shape, the first index that is off, and both values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

import kernels
from kernels._ops import FAMILIES

# Relative error allowed against the float64 reference, by the dtype the kernel computed in.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
# The smallest scale an error is measured against. The test data is O(1), and rounding leaves
# an absolute error of ~eps on the O(1) intermediates; an output that cancellation or a saturated
# gate makes tiny (1 - tanh(15)^2 = 3.7e-13) inherits that absolute error, which is large
# *relative* to it, in every correct implementation (the reference and PyTorch differ there too).
# So errors are measured against max(max|expected|, 1): rounding of O(1) work passes, and an
# indexing or sign bug, which errs by O(1), fails.
SCALE_FLOOR = {np.dtype(np.float64): 1.0, np.dtype(np.float32): 1.0}
DTYPES = (np.float32, np.float64)


@dataclass(frozen=True)
class Impl:
    backend: str
    family: str
    version: str
    dtype: Any

    @property
    def ops(self) -> kernels.Ops:
        return _backend(self.backend, self.family, self.version)

    @property
    def rtol(self) -> float:
        return RTOL[np.dtype(self.dtype)]

    @property
    def tol(self) -> tuple[float, float]:
        """(rtol, scale floor) for assert_close."""
        return RTOL[np.dtype(self.dtype)], SCALE_FLOOR[np.dtype(self.dtype)]

    @property
    def emulated(self) -> bool:
        """True where the kernels run in an emulator (CUDA simulator, CUDA C on the CPU): slow,
        so their tests draw fewer and smaller cases."""
        return _emulated(self.backend)

    def put(self, arrays):
        """Move host arrays (None passes through) to where this backend computes."""
        return _put(self.backend, arrays)

    def __str__(self) -> str:
        return f"{self.backend}-{self.version}-{np.dtype(self.dtype).name}"


def _emulated(backend: str) -> bool:
    if backend == "cuda_c_cpu":
        return True
    if backend == "cuda":
        from kernels.runtime.numba_cuda import simulator_on

        return simulator_on()
    return False


def _put(backend: str, arrays):
    types = kernels.get(backend).array_types
    if np.ndarray in types:
        return arrays
    import cupy

    return [None if a is None else cupy.asarray(a) for a in arrays]


@functools.cache
def _backend(name: str, family: str, version: str) -> kernels.Ops:
    return kernels.get(name, **{family: version})


@functools.cache
def reference() -> kernels.Ops:
    """The specification: the numpy backend with its default versions."""
    return kernels.get("numpy")


def _default_version(backend: str, family: str) -> str:
    return kernels.get(backend).version[family]


def impls(
    family: str, *, include_reference: bool = False, emulated: bool | None = False
) -> list[Impl]:
    """Every (backend, version, dtype) of `family` that runs here.

    The reference's own default version in float64 is the yardstick, so it is left out unless
    `include_reference` (it would be compared with itself). `emulated`: False (default) gives
    the implementations that run natively, True those that run in an emulator, None both.
    """
    found = []
    for backend in kernels.available():
        if emulated is not None and _emulated(backend) != emulated:
            continue
        for version in kernels.get(backend).versions[family]:
            for dtype in DTYPES:
                is_yardstick = (
                    backend == "numpy"
                    and version == _default_version("numpy", family)
                    and dtype == np.float64
                )
                if is_yardstick and not include_reference:
                    continue
                found.append(Impl(backend, family, version, dtype))
    return found


def all_families() -> tuple[str, ...]:
    return tuple(FAMILIES)


def relative_error(actual, expected, floor: float = 0.0) -> float:
    """max|actual - expected| / max(max|expected|, floor); the absolute error if that is 0."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if expected.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(expected))), floor)
    diff = float(np.max(np.abs(actual - expected)))
    return diff / scale if scale > 0 else diff


def assert_close(actual, expected, tol, where: str) -> None:
    """Fail with op/backend/shape and the first index off by more than rtol * scale.

    tol is rtol, or (rtol, floor) with the scale max(max|expected|, floor) (see SCALE_FLOOR).
    """
    rtol, floor = tol if isinstance(tol, tuple) else (tol, 0.0)
    actual_arr = np.asarray(actual)
    expected_arr = np.asarray(expected)
    if actual_arr.shape != expected_arr.shape:
        raise AssertionError(
            f"{where}: shape {actual_arr.shape} differs from expected {expected_arr.shape}"
        )
    err = relative_error(actual_arr, expected_arr, floor)
    if not err <= rtol:  # also catches NaN
        a64 = actual_arr.astype(np.float64)
        e64 = expected_arr.astype(np.float64)
        scale = max(float(np.max(np.abs(e64))), floor, 1e-300)
        off = ~(np.abs(a64 - e64) <= rtol * scale)
        index = tuple(int(i) for i in np.argwhere(off)[0])
        raise AssertionError(
            f"{where}: relative error {err:.3e} > {rtol:.0e} over shape {expected_arr.shape}; "
            f"first differing index {index}: got {a64[index]!r}, expected {e64[index]!r}"
        )


def assert_all_close(actuals, expecteds, names, tol, where: str) -> None:
    """assert_close for each named output of a multi-output op (dx, dw, db, ...)."""
    assert len(actuals) == len(expecteds) == len(names), f"{where}: wrong number of outputs"
    for name, actual, expected in zip(names, actuals, expecteds, strict=True):
        assert_close(actual, expected, tol, f"{where} -> {name}")


def assert_dtype(arrays, dtype, where: str) -> None:
    for i, a in enumerate(arrays):
        if np.asarray(a).dtype != np.dtype(dtype):
            raise AssertionError(
                f"{where}: output {i} has dtype {np.asarray(a).dtype}, not {dtype}"
            )


def to_numpy(a):
    """Bring a result back to the host (device arrays have .get() or .copy_to_host())."""
    if hasattr(a, "get"):
        return a.get()
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return np.asarray(a)


def numerical_vjp(f, inputs: list[np.ndarray], dy, eps: float = 1e-6) -> list[np.ndarray]:
    """Central finite differences of L = sum_outputs <dy_k, f(inputs)_k> for each input.

        dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)      error O(eps^2) in float64

    f returns one array or a tuple of arrays; dy is the matching array or tuple. This is what
    every backward computes analytically (dy^T J), so the two are compared directly.
    """

    def loss() -> float:
        out = f(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        dys = dy if isinstance(dy, tuple) else (dy,)
        return float(sum(np.sum(o * d) for o, d in zip(outs, dys, strict=True)))

    grads = []
    for a in inputs:
        grad = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + eps
            plus = loss()
            a[i] = keep - eps
            minus = loss()
            a[i] = keep
            grad[i] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads
