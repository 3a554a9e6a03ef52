"""The launch validator: every CUDA C launch is checked against the GPU's limits before it runs.

A compiled kernel checks nothing, and the CPU emulation is more forgiving than a GPU (it runs a
grid with a 0 dimension, a 2048-thread block, an `int` read from an int64). So both launch
paths, the emulation (runtime/cuda_c_cpu.py) and CuPy (runtime/cupy_module.py), call one
validator (runtime/launch_check.py, reading the sources through runtime/cuda_source.py) that
refuses what CUDA would refuse or misread.

Every rejected case is launched through BOTH paths, and each path's launcher is replaced by a
recorder: the emulation's compiled library (the real module is loaded, then its library swapped
out) and CuPy itself (a stand-in `cupy` module in sys.modules). So a test sees the ValueError
and sees that nothing was launched; without a validator the launch is merely recorded and the
test fails, which is how each of these tests was first seen to fail.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from minirad.kernels.runtime import cuda_c_cpu, cupy_module
from minirad.kernels.runtime.nvcc import cuda_sources, nvcc_path, resources

pytestmark = pytest.mark.skipif(cuda_c_cpu.compiler() is None, reason="g++ not found")

LINEAR = next(p for p in cuda_sources() if p.name == "linear.cu")
RUNTIMES = ["cuda_c_cpu", "cupy"]

# A source with the parameter types linear.cu lacks (float, double, unsigned, long long scalars)
# and a kernel whose static shared memory is just over the 48 KiB a block may use.
SCALARS_AND_SHARED = r"""
#define SMALL 16
#define BIG (12 * 1024 + 1)  // floats: 49,156 bytes, 4 bytes more than 48 KiB

template <typename T>
__device__ void scale(T* y, T a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] *= a;
}

template <typename T>
__device__ void stage(T* y, int n) {
    __shared__ T tile[BIG];
    __shared__ int counts[SMALL][SMALL + 1];
    tile[threadIdx.x] = T(n);
    counts[0][threadIdx.x % SMALL] = n;
    __syncthreads();
    if (threadIdx.x < n) y[threadIdx.x] = tile[threadIdx.x] + counts[0][0];
}

extern "C" __global__ void scale_f32(float* y, float a, int n) { scale<float>(y, a, n); }
extern "C" __global__ void scale_f64(double* y, double a, int n) { scale<double>(y, a, n); }
extern "C" __global__ void count_up(long long* y, unsigned n, long long start) {
    if (threadIdx.x < n) y[threadIdx.x] = start + threadIdx.x;
}
extern "C" __global__ void stage_f32(float* y, int n) { stage<float>(y, n); }
"""


# ----------------------------------------------------------------------------------------------
# Two launch paths whose launchers record instead of run
# ----------------------------------------------------------------------------------------------


class RecordingLibrary:
    """Stands in for the emulation's compiled library: records each emu_launch_* call."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def __getattr__(self, name: str):
        return lambda *c_args: self.launched.append(name.removeprefix("emu_launch_"))


class StandInDeviceArray:
    """What the stand-in cupy calls ndarray: a device array, wrapping host memory."""

    def __init__(self, host: np.ndarray) -> None:
        self.host = host
        self.dtype, self.shape, self.flags = host.dtype, host.shape, host.flags


def stand_in_cupy(launched: list[str]) -> types.ModuleType:
    """A `cupy` module with ndarray and a RawModule whose kernels record their launches."""

    class RawModule:
        def __init__(self, code: str, options: tuple = ()) -> None:
            self.code = code

        def get_function(self, name: str):
            return lambda grid, block, args: launched.append(name)

    module = types.ModuleType("cupy")
    module.ndarray = StandInDeviceArray  # type: ignore[attr-defined]
    module.RawModule = RawModule  # type: ignore[attr-defined]
    return module


class Recorded:
    """One .cu on one runtime, its launches recorded: .launch(...), .launched, .device(array)."""

    def __init__(self, runtime: str, path: Path, monkeypatch) -> None:
        self.runtime = runtime
        if runtime == "cuda_c_cpu":
            self.module = copy.copy(cuda_c_cpu.load(path))  # the cached module stays intact
            self.module._library = RecordingLibrary()
            self.launched = self.module._library.launched
        else:
            self.launched = []
            monkeypatch.setitem(sys.modules, "cupy", stand_in_cupy(self.launched))
            self.module = cupy_module.CupyModule(path)

    def device(self, array: np.ndarray):
        """`array` as this runtime's device array."""
        return array if self.runtime == "cuda_c_cpu" else StandInDeviceArray(array)

    def launch(self, name: str, grid, block, args) -> None:
        self.module.launch(name, grid, block, args)


@pytest.fixture(params=RUNTIMES)
def linear_cu(request, monkeypatch) -> Recorded:
    return Recorded(request.param, LINEAR, monkeypatch)


@pytest.fixture(params=RUNTIMES)
def scalars_cu(request, monkeypatch, tmp_path) -> Recorded:
    path = tmp_path / "scalars_and_shared.cu"
    path.write_text(SCALARS_AND_SHARED)
    return Recorded(request.param, path, monkeypatch)


def add_bias_args(module: Recorded, rows=None) -> tuple:
    """Arguments of linear.cu's add_bias_f64(double* y, const double* b, int rows, int cols)."""
    rows = np.int32(4) if rows is None else rows
    return (module.device(np.zeros((4, 3))), module.device(np.zeros(3)), rows, np.int32(3))


def expect_refused(module: Recorded, name: str, grid, block, args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        module.launch(name, grid, block, args)
    assert module.launched == [], f"{name} was launched although the validator refused it"


# ----------------------------------------------------------------------------------------------
# Grid and block dimensions
# ----------------------------------------------------------------------------------------------

REFUSED_GEOMETRY = [
    # (grid, block, what the message names)
    ((0,), (256,), r"grid\.x = 0"),
    ((4, 0), (256,), r"grid\.y = 0"),
    ((1, 1, 0), (256,), r"grid\.z = 0"),
    ((1,), (0,), r"block\.x = 0"),
    ((1,), (32, 0), r"block\.y = 0"),
    ((1,), (32, 1, 0), r"block\.z = 0"),
    ((1,), (-1,), r"block\.x = -1"),
    ((1,), (32, 33), r"1056 threads per block"),
    ((1,), (2048,), r"block\.x = 2048"),
    ((1,), (1, 1025), r"block\.y = 1025"),
    ((1,), (1, 1, 65), r"block\.z = 65"),
    ((2**31,), (256,), r"grid\.x = 2147483648"),
    ((1, 65536), (256,), r"grid\.y = 65536"),
    ((1, 1, 65536), (256,), r"grid\.z = 65536"),
]


@pytest.mark.parametrize("grid, block, match", REFUSED_GEOMETRY, ids=str)
def test_a_launch_outside_the_hardware_limits_is_refused(linear_cu, grid, block, match):
    expect_refused(
        linear_cu, "add_bias_f64", grid, block, add_bias_args(linear_cu), f"add_bias_f64.*{match}"
    )


LEGAL_EXTREMES = [
    ((2**31 - 1, 65535, 65535), (1024,)),
    ((1,), (1024, 1, 1)),
    ((1,), (1, 1024, 1)),
    ((1,), (16, 1, 64)),
    ((7, 3), (32, 32)),
    (5, 128),  # ints are 1-D sizes
]


@pytest.mark.parametrize("grid, block", LEGAL_EXTREMES, ids=str)
def test_the_limits_themselves_are_legal(linear_cu, grid, block):
    """The validator is not stricter than CUDA: the largest legal sizes pass to the launcher."""
    linear_cu.launch("add_bias_f64", grid, block, add_bias_args(linear_cu))
    assert linear_cu.launched == ["add_bias_f64"]


# ----------------------------------------------------------------------------------------------
# Arguments against the kernel's C signature
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, match",
    [
        (4, r"rows.*Python int.*int32"),  # CuPy would pass a Python int as a 64-bit integer
        (np.int64(4), r"rows.*int64.*int32"),
        (np.uint32(4), r"rows.*uint32.*int32"),
        (np.float32(4), r"rows.*float32.*int32"),
        (np.zeros(1, dtype=np.int32), r"rows.*an array.*scalar"),
    ],
    ids=["python-int", "int64", "uint32", "float32", "array"],
)
def test_a_scalar_of_another_type_than_the_c_parameter_is_refused(linear_cu, rows, match):
    args = add_bias_args(linear_cu, rows=rows)
    expect_refused(linear_cu, "add_bias_f64", 1, 32, args, f"add_bias_f64.*{match}")


@pytest.mark.parametrize(
    "name, args, match",
    [
        ("scale_f32", (np.float64(2), np.int32(3)), r"scale_f32.*parameter a.*float64.*float32"),
        ("scale_f32", (2.0, np.int32(3)), r"scale_f32.*parameter a.*Python float.*float32"),
        ("scale_f64", (np.float32(2), np.int32(3)), r"scale_f64.*parameter a.*float32.*float64"),
    ],
    ids=["float64-for-float", "python-float", "float32-for-double"],
)
def test_a_float_scalar_of_the_wrong_width_is_refused(scalars_cu, name, args, match):
    dtype = np.float32 if name.endswith("f32") else np.float64
    y = scalars_cu.device(np.ones(3, dtype=dtype))
    expect_refused(scalars_cu, name, 1, 32, (y, *args), match)


def test_unsigned_and_long_long_scalars_are_checked(scalars_cu):
    y = scalars_cu.device(np.zeros(3, dtype=np.int64))
    match = r"count_up.*parameter n.*int32.*uint32"
    expect_refused(scalars_cu, "count_up", 1, 32, (y, np.int32(3), np.int64(0)), match)
    match = r"count_up.*parameter start.*int32.*int64"
    expect_refused(scalars_cu, "count_up", 1, 32, (y, np.uint32(3), np.int32(0)), match)
    scalars_cu.launch("count_up", 1, 32, (y, np.uint32(3), np.int64(0)))
    assert scalars_cu.launched == ["count_up"]


def test_a_host_array_where_the_gpu_expects_a_device_pointer_is_refused(monkeypatch):
    """On CuPy a numpy.ndarray is host memory: the kernel would read a host address."""
    module = Recorded("cupy", LINEAR, monkeypatch)
    host_y = np.zeros((4, 3))
    args = (host_y, module.device(np.zeros(3)), np.int32(4), np.int32(3))
    match = r"add_bias_f64.*parameter y.*host array \(numpy\.ndarray\).*device array"
    expect_refused(module, "add_bias_f64", 1, 32, args, match)


def test_the_emulation_calls_a_numpy_array_a_device_array(monkeypatch):
    module = Recorded("cuda_c_cpu", LINEAR, monkeypatch)
    module.launch("add_bias_f64", 1, 32, add_bias_args(module))
    assert module.launched == ["add_bias_f64"]


def test_an_array_of_another_element_type_than_the_pointer_is_refused(linear_cu):
    """A float32 array read through a double* gives garbage, not an error, on a GPU."""
    y = linear_cu.device(np.zeros((4, 3), dtype=np.float32))
    args = (y, linear_cu.device(np.zeros(3)), np.int32(4), np.int32(3))
    expect_refused(linear_cu, "add_bias_f64", 1, 32, args, r"add_bias_f64.*y.*float32.*double")


def test_a_scalar_where_the_kernel_expects_a_pointer_is_refused(linear_cu):
    args = (np.float64(0), linear_cu.device(np.zeros(3)), np.int32(4), np.int32(3))
    expect_refused(linear_cu, "add_bias_f64", 1, 32, args, r"add_bias_f64.*y.*pointer")


def test_a_strided_array_is_refused_on_both_runtimes(linear_cu):
    y = linear_cu.device(np.zeros((4, 6))[:, ::2])
    args = (y, linear_cu.device(np.zeros(3)), np.int32(4), np.int32(3))
    expect_refused(linear_cu, "add_bias_f64", 1, 32, args, r"add_bias_f64.*y.*C-contiguous")


def test_a_wrong_number_of_arguments_is_refused(linear_cu):
    args = add_bias_args(linear_cu)[:3]
    expect_refused(linear_cu, "add_bias_f64", 1, 32, args, r"add_bias_f64.*4 arguments, got 3")


def test_an_unknown_kernel_is_refused(linear_cu):
    expect_refused(linear_cu, "add_bias_f16", 1, 32, (), r"linear\.cu.*add_bias_f16")


# ----------------------------------------------------------------------------------------------
# Shared memory
# ----------------------------------------------------------------------------------------------


def test_static_shared_memory_over_48_kib_is_refused(scalars_cu):
    y = scalars_cu.device(np.zeros(32, dtype=np.float32))
    match = r"stage_f32.*50244 bytes of static __shared__.*49152"
    expect_refused(scalars_cu, "stage_f32", 1, 32, (y, np.int32(32)), match)


def test_static_shared_bytes_are_read_off_the_source():
    """BIG floats + SMALL x (SMALL + 1) ints, through a template and #defines with arithmetic."""
    from minirad.kernels.runtime.cuda_source import static_shared_bytes

    sizes = static_shared_bytes(SCALARS_AND_SHARED)
    assert sizes == {
        "scale_f32": 0,
        "scale_f64": 0,
        "count_up": 0,
        "stage_f32": (12 * 1024 + 1) * 4 + 16 * 17 * 4,
    }


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc not installed")
@pytest.mark.parametrize("source", cuda_sources(), ids=lambda p: p.name)
def test_static_shared_bytes_agree_with_ptxas(source):
    """The validator's count of each kernel's static shared memory is the compiler's own."""
    from minirad.kernels.runtime.cuda_source import static_shared_bytes

    counted = static_shared_bytes(source.read_text())
    compiled = {k.kernel: k.shared_bytes for k in resources(source)}
    assert counted == compiled
