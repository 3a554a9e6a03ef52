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

from minirad import kernels

# Relative error allowed against the float64 reference, by the dtype the kernel computed in.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
# The smallest scale an error is measured against. The test data is O(1), and rounding leaves
# an absolute error of ~eps on the O(1) intermediates; an output that cancellation or a saturated
# gate makes tiny (1 - tanh(15)^2 = 3.7e-13) inherits that absolute error, which is large
# *relative* to it, in every correct implementation (the reference and PyTorch differ there too).
# So errors are measured against max(max|expected|, 1), in both dtypes: rounding of O(1) work
# passes, and an indexing or sign bug, which errs by O(1), fails.
SCALE_FLOOR = 1.0
DTYPES = (np.float32, np.float64)


@dataclass(frozen=True)
class Impl:
    backend: str
    family: str
    version: str
    dtype: Any

    @property
    def ops(self) -> kernels.Ops:
        """The backend's ops with this version; on a GPU backend each host array argument is
        moved to the device first (see HostArgumentsMoved), so one test body serves all."""
        ops = _backend(self.backend, self.family, self.version)
        return HostArgumentsMoved(ops) if ops.on_device else ops  # type: ignore[return-value]

    @property
    def tol(self) -> tuple[float, float]:
        """(rtol, scale floor) for assert_close."""
        return RTOL[np.dtype(self.dtype)], SCALE_FLOOR

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


class HostArgumentsMoved:
    """An Ops of a GPU backend whose methods take host arrays too: each NumPy array argument is
    copied to the device (one upload) before the real method runs, which itself sees device
    arrays only, as the contract demands. Results stay on the device: compare them through
    to_numpy. That a device backend refuses host arrays is tested without this wrapper
    (test_contract.py, test_launch_validator.py)."""

    def __init__(self, ops: kernels.Ops) -> None:
        self._ops = ops

    def __getattr__(self, name: str):
        attribute = getattr(self._ops, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def on_device(*args, **kwargs):
            return attribute(*(_moved_to(self._ops, a) for a in args), **kwargs)

        return on_device


def _moved_to(ops: kernels.Ops, a):
    """A host array where `ops` computes (one upload on a GPU backend); anything else as is."""
    return ops.xp.asarray(a) if ops.on_device and isinstance(a, np.ndarray) else a


def _emulated(backend: str) -> bool:
    if backend == "cuda_c_cpu":
        return True
    if backend == "cupy":  # the device stand-in runs the .cu files in the g++ emulation
        return getattr(_default_ops("cupy").xp, "__standin__", False)
    if backend == "cuda":
        from minirad.kernels.runtime.numba_cuda import simulator_on

        return simulator_on()
    return False


def _put(backend: str, arrays):
    return [_moved_to(_default_ops(backend), a) for a in arrays]


@functools.cache
def _default_ops(name: str) -> kernels.Ops:
    """kernels.get(name), assembled once per test session."""
    return kernels.get(name)


@functools.cache
def _backend(name: str, family: str, version: str) -> kernels.Ops:
    return kernels.get(name, **{family: version})


@functools.cache
def reference() -> kernels.Ops:
    """The specification: the numpy backend with its default versions."""
    return kernels.get("numpy")


def _default_version(backend: str, family: str) -> str:
    return _default_ops(backend).version[family]


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
        for version in _default_ops(backend).versions[family]:
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


def block_widths(impl: Impl) -> dict[str, tuple[int, ...]]:
    """The widths of the blocks `impl` cuts its work into, by the dimension of the op's edge
    cases (tests/shapes.py, `*_edge_cases`) that they cut; {} for a version without blocks.

    Read from the kernels' own constants, so a retuned constant moves the tested edges with it:
      numba conv2d blocked   TILE output channels per register tile (and input channels, which
                             the backward's flipped kernel turns into output channels)
      numba linear blocked   ROW_BLOCK rows of the left operand per task, COL_BLOCK rows of the
                             right one per cache block (dw's left operand is dy.T: out rows)
      cuda / CUDA C          TILE x TILE thread blocks of the 2-D products; THREADS(_1D) threads
                             of 1-D grids and of the block reductions (one block per row or per
                             output channel, each thread striding over the reduced axis)
    """
    key = (impl.backend, impl.family, impl.version)
    if impl.backend == "numba":
        from minirad.kernels.conv2d import numba_cpu as conv_cpu
        from minirad.kernels.linear import numba_cpu as linear_cpu

        rows, cols = linear_cpu.ROW_BLOCK, linear_cpu.COL_BLOCK
        return {
            ("numba", "conv2d", "blocked"): {"channels": (conv_cpu.TILE,)},
            ("numba", "linear", "blocked"): {"N": (rows,), "n_in": (cols,), "n_out": (rows, cols)},
        }.get(key, {})
    if impl.backend == "cuda":
        from minirad.kernels.runtime.numba_cuda import THREADS_1D, TILE

        return _gpu_block_widths(impl, TILE, THREADS_1D)
    if impl.backend in ("cupy", "cuda_c_cpu"):
        from minirad.kernels.conv2d import cuda_c as conv_c
        from minirad.kernels.linear import cuda_c as linear_c
        from minirad.kernels.maxpool2d import cuda_c as pool_c
        from minirad.kernels.softmax import cuda_c as softmax_c

        assert conv_c.TILE == linear_c.TILE and conv_c.THREADS == linear_c.THREADS
        assert pool_c.THREADS == softmax_c.THREADS == linear_c.THREADS
        return _gpu_block_widths(impl, linear_c.TILE, linear_c.THREADS)
    return {}


def _gpu_block_widths(impl: Impl, tile: int, threads: int) -> dict[str, tuple[int, ...]]:
    """Both GPU backends cut the same dimensions: 2-D products into tile x tile blocks, 1-D
    work into blocks of `threads`."""
    if impl.family == "conv2d":
        # tiled: K x NPQ (forward), C x NHW (dx), K x CRS (dw) tiles; db one block per channel
        # striding over N*P*Q; dw and db cut N*P*Q into slices when it is long (checked in
        # tests/test_geometry.py). naive: one thread per output element, a 1-D grid.
        if impl.version == "naive":
            return {"pixels": (threads,)}
        return {"channels": (tile,), "pixels": (tile, threads)}
    if impl.family == "linear":  # the products, the bias add (1-D over N*out), column sums
        return {"N": (tile,), "n_in": (tile,), "n_out": (tile, threads)}
    if impl.family == "rnn":  # matmuls of (B, I) by (G*H, I); gate math 1-D over B*H, B*G*H
        return {"H": (tile,)}
    if impl.family == "maxpool2d":  # one thread per output (forward) or input (backward)
        return {"outputs": (threads,)}
    if impl.family == "softmax":  # block: a block per row; naive: a thread per row
        return {"columns": (threads,)} if impl.version == "block" else {"rows": (threads,)}
    return {}


def _differences(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected| elementwise, 0 where both are the same infinity (a max-pool of a
    window of -inf is -inf), inf where only one is infinite, NaN where either is NaN."""
    same = actual == expected  # True for equal infinities, whose difference would be NaN
    with np.errstate(invalid="ignore"):  # inf - inf, replaced by 0 where it is a match
        return np.where(same, 0.0, np.abs(actual - expected))


def _scale(expected: np.ndarray, floor: float) -> float:
    """max(max|expected| over the finite entries, floor): an infinite expected value must not
    make every error look relatively small."""
    finite = np.abs(expected[np.isfinite(expected)])
    return max(float(finite.max()) if finite.size else 0.0, floor)


def relative_error(actual, expected, floor: float = 0.0) -> float:
    """max|actual - expected| / max(max|expected|, floor); the absolute error if that is 0.
    Equal infinities count as equal (see _differences)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if expected.size == 0:
        return 0.0
    scale = _scale(expected, floor)
    diff = float(np.max(_differences(actual, expected)))
    return diff / scale if scale > 0 else diff


def assert_close(actual, expected, tol, where: str) -> None:
    """Fail with op/backend/shape and the first index off by more than rtol * scale.

    tol is rtol, or (rtol, floor) with the scale max(max|expected|, floor) (see SCALE_FLOOR).
    """
    rtol, floor = tol if isinstance(tol, tuple) else (tol, 0.0)
    actual_arr = to_numpy(actual)  # a device result is copied back; np.asarray would refuse it
    expected_arr = to_numpy(expected)
    if actual_arr.shape != expected_arr.shape:
        raise AssertionError(
            f"{where}: shape {actual_arr.shape} differs from expected {expected_arr.shape}"
        )
    err = relative_error(actual_arr, expected_arr, floor)
    if not err <= rtol:  # also catches NaN
        a64 = actual_arr.astype(np.float64)
        e64 = expected_arr.astype(np.float64)
        scale = max(_scale(e64, floor), 1e-300)
        off = ~(_differences(a64, e64) <= rtol * scale)
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
    """Each array (on the host or a device: only its .dtype is read, no copy) has `dtype`."""
    for i, a in enumerate(arrays):
        if np.dtype(a.dtype) != np.dtype(dtype):
            raise AssertionError(f"{where}: output {i} has dtype {a.dtype}, not {dtype}")


def to_numpy(a):
    """Bring a result back to the host: minirad.autograd.to_host, the one definition of it
    (.get() for CuPy arrays, .copy_to_host() for Numba device arrays, np.asarray otherwise)."""
    # Imported here: the rest of this harness needs only `kernels`, not the engine.
    from minirad.autograd import to_host

    return to_host(a)


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
