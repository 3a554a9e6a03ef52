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

import threading
from pathlib import Path

from minirad.kernels.runtime.cuda_source import CudaSource
from minirad.kernels.runtime.grids import dim3
from minirad.kernels.runtime.launch_check import check_launch

NVRTC_OPTIONS = ("--std=c++17",)


def unavailable_reason() -> str | None:
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
    return None


class CupyModule:
    def __init__(self, path: Path):
        import cupy

        self.path = path
        self.source = CudaSource.read(path)
        self._device_array = cupy.ndarray
        self._module = cupy.RawModule(code=self.source.text, options=NVRTC_OPTIONS)

    def launch(self, name: str, grid, block, args) -> None:
        check_launch(self.source, name, grid, block, args, device_array=self._device_array)
        self._module.get_function(name)(dim3(grid), dim3(block), tuple(args))


_LOADED: dict[Path, CupyModule] = {}
_LOCK = threading.Lock()


def load(cu_path: str | Path) -> CupyModule:
    cu_path = Path(cu_path).resolve()
    with _LOCK:
        if cu_path not in _LOADED:
            _LOADED[cu_path] = CupyModule(cu_path)
        return _LOADED[cu_path]
