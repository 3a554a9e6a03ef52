"""The two ways a CUDA C source runs: CuPy on a GPU, or the g++ emulation on the CPU.

An op folder's cuda_c.py holds the host code once (allocate outputs, pick grid and block,
launch), written against this small interface; `make_versions(runtime)` builds its versions:

    runtime.xp                       the array module: cupy on a GPU, numpy in the emulation
    runtime.load(path).launch(name, grid, block, args)

Every kernel of a .cu exists twice, `<name>_f32` and `<name>_f64`; `suffix(dtype)` is that ending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import DTypeLike


def suffix(dtype: DTypeLike) -> str:
    """The ending of a kernel's entry point for arrays of `dtype`: "f32" or "f64"."""
    return "f32" if np.dtype(dtype) == np.float32 else "f64"


@dataclass(frozen=True)
class CudaCRuntime:
    name: str
    xp: ModuleType
    load: Callable[[Any], Any]


def emulation() -> CudaCRuntime:
    from minirad.kernels.runtime import cuda_c_cpu

    return CudaCRuntime("cuda_c_cpu", np, cuda_c_cpu.load)


def emulation_unavailable_reason() -> str | None:
    from minirad.kernels.runtime import cuda_c_cpu

    if cuda_c_cpu.compiler() is None:
        return "g++ not found (the emulation compiles the .cu files with g++ -std=c++20)"
    return None


def cupy_gpu() -> CudaCRuntime:
    import cupy

    from minirad.kernels.runtime import cupy_module

    return CudaCRuntime("cupy", cupy, cupy_module.load)
