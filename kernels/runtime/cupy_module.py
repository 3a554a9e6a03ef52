"""Launch the CUDA C sources on a real GPU with CuPy's RawModule (NVRTC compiles them).

The same .cu files the CPU emulation runs (runtime/cuda_c_cpu.py); the same launch signature:

    module = load("kernels/linear/linear.cu")
    module.launch("matmul_tiled_f32", grid=(4, 2), block=(16, 16), args=(a, b, c, np.int32(M)))

Arrays are CuPy arrays (device memory); scalars are NumPy scalars of the kernel's C type; grid and
block are ints or tuples of up to three ints, as in CUDA (grids.dim3). Every launch is checked
first, by the validator the emulation uses too (launch_check.check_launch): the GPU's limits, and
each argument against the kernel's C signature, where a numpy.ndarray is a host array, refused.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from minirad.kernels.runtime.cuda_source import CudaSource
from minirad.kernels.runtime.grids import dim3
from minirad.kernels.runtime.launch_check import check_launch

NVRTC_OPTIONS = ("--std=c++17",)

# The smallest source NVRTC can compile: the backend is usable only if this compiles and loads.
PROBE_SOURCE = 'extern "C" __global__ void minirad_probe(int* x) { *x = 1; }'


def unavailable_reason() -> str | None:
    """None if CUDA C can run through CuPy here, else why not (import, GPU, then NVRTC)."""
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install minirad[gpu])"
    except Exception as error:  # a CUDA runtime that fails to load raises other errors
        return f"cupy cannot be imported ({type(error).__name__}: {error})"
    try:
        if not cupy.is_available():
            return "no CUDA GPU (cupy.is_available() is False)"
    except Exception as error:
        return f"no usable CUDA GPU ({type(error).__name__}: {error})"
    return nvrtc_problem()


@functools.cache
def nvrtc_problem() -> str | None:
    """Why CuPy cannot compile a kernel here (None if it can); tried once per process.

    `pip install cupy-cuda12x` without its [ctk] extra brings no NVRTC and no CUDA headers: on a
    machine whose only CUDA toolkit is another major version (a CUDA 13 image, say), cupy imports
    and sees the GPU, and the first RawModule fails. Compiling a one-line kernel finds that out
    here, where it can be reported, instead of inside the first op.
    """
    import cupy

    try:
        cupy.RawModule(code=PROBE_SOURCE, options=NVRTC_OPTIONS).get_function("minirad_probe")
    except Exception as error:
        major = _cuda_major(cupy)
        return (
            f"cupy cannot compile CUDA C with NVRTC ({type(error).__name__}: {error}); "
            f'install the CUDA {major} toolkit wheels: pip install "cupy-cuda{major}x[ctk]"'
        )
    return None


def _cuda_major(cupy) -> int:
    """The CUDA major version this cupy was built for (12 if it cannot say)."""
    try:
        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:
        return 12


class CupyModule:
    def __init__(self, path: Path):
        import cupy

        self.path = path
        self.source = CudaSource.read(path)
        self._device_array = cupy.ndarray
        self._module = cupy.RawModule(code=self.source.text, options=NVRTC_OPTIONS)
        # Looked up once per kernel (the first lookup compiles the module): get_function costs
        # a call into the driver, too much for every launch. Filled once, only read afterwards,
        # so launches from several threads need no lock.
        self._functions = {name: self._module.get_function(name) for name in self.source.kernels}

    def launch(self, name: str, grid, block, args) -> None:
        check_launch(self.source, name, grid, block, args, device_array=self._device_array)
        self._functions[name](dim3(grid), dim3(block), tuple(args))


_LOADED: dict[Path, CupyModule] = {}
_LOCK = threading.Lock()


def load(cu_path: str | Path) -> CupyModule:
    cu_path = Path(cu_path).resolve()
    with _LOCK:
        if cu_path not in _LOADED:
            _LOADED[cu_path] = CupyModule(cu_path)
        return _LOADED[cu_path]
