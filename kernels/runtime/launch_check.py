"""The launch validator: check a CUDA C launch against the GPU's limits before it runs.

A GPU refuses a launch outside its limits only when it runs ("invalid configuration argument",
far from the line that chose the sizes), and it does not refuse a wrong argument at all: an int64
passed for an `int` is read as two ints, a float64 array read through a `float*` is garbage, a
host address is an illegal access. The CPU emulation is more forgiving still (a block of 2048
threads, a grid with a 0 dimension run there). So the two runtimes that launch the .cu sources,
the emulation (cuda_c_cpu.py) and CuPy (cupy_module.py), both call `check_launch` first, and a
launch the emulation accepts is one a GPU accepts too.

Checked, each failure a ValueError that names the kernel and the offending value:

    geometry    every grid and block dimension >= 1 (an empty input launches nothing, see
                grids.py); block.x, block.y <= 1024, block.z <= 64, at most 1024 threads in a
                block; grid.x <= 2^31 - 1, grid.y and grid.z <= 65535
    shared      the kernel's static __shared__ arrays (counted off the source by cuda_source.py,
                the same bytes ptxas reports) within the 48 KiB a block has without opt-in.
                The launch API (`launch(name, grid, block, args)`, both runtimes) has no
                dynamic shared-memory argument and no kernel here declares extern __shared__,
                so the static arrays are all the shared memory a launch uses.
    arguments   one per parameter of the kernel's C signature (cuda_source.parse_kernels):
                  a pointer takes a C-contiguous array of the runtime's device-array type whose
                  dtype is the pointed-to type (float* <- float32, long long* <- int64);
                  a scalar takes a NumPy scalar of exactly its C type (int <- np.int32,
                  float <- np.float32, double <- np.float64). A Python int or float is refused:
                  its C width would be the launcher's choice, not the kernel's.

`device_array` is what the runtime calls a device array: numpy.ndarray in the emulation (its
"device" is host memory), cupy.ndarray on a GPU, where a numpy.ndarray is a host array and is
refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from minirad.kernels.runtime.cuda_source import CudaSource, Param, c_dtype
from minirad.kernels.runtime.grids import Size, dim3

# The launch limits of every GPU minirad supports: CUDA C++ Programming Guide, "Compute
# Capabilities", table "Technical Specifications per Compute Capability" (maximum x-, y- and
# z-dimension of a grid and of a block, maximum threads per block, maximum shared memory per
# block without opt-in); the same for compute capabilities 7.5 to 9.0 (sm_75 .. sm_90).
MAX_GRID = (2**31 - 1, 65_535, 65_535)  # (x, y, z), in blocks
MAX_BLOCK = (1024, 1024, 64)  # (x, y, z), in threads
MAX_THREADS_PER_BLOCK = 1024
MAX_SHARED_BYTES_PER_BLOCK = 48 * 1024  # more needs cudaFuncSetAttribute (dynamic memory only)


def check_launch(
    source: CudaSource,
    name: str,
    grid: Size,
    block: Size,
    args: Sequence[Any],
    *,
    device_array: type[Any],
) -> None:
    """Raise ValueError unless launching kernel `name` of `source` this way is legal.

    device_array is the runtime's array type (numpy.ndarray in the emulation, cupy.ndarray).
    """
    if name not in source.kernels:
        raise ValueError(f'{source.name}: no extern "C" __global__ kernel {name!r}')
    check_geometry(name, grid, block)
    check_shared_memory(name, source.shared_bytes.get(name, 0))
    check_arguments(name, source.kernels[name], args, device_array)


def check_geometry(kernel: str, grid: Size, block: Size) -> None:
    """Every dimension at least 1 and within MAX_GRID / MAX_BLOCK; MAX_THREADS_PER_BLOCK."""
    sizes = {"grid": dim3(grid), "block": dim3(block)}
    limits = {"grid": MAX_GRID, "block": MAX_BLOCK}
    for what, size in sizes.items():
        for axis, extent, limit in zip("xyz", size, limits[what], strict=True):
            where = (
                f"{kernel}: {what}.{axis} = {extent} (grid {sizes['grid']}, block {sizes['block']})"
            )
            if extent < 1:
                raise ValueError(
                    f"{where}; every dimension must be at least 1 (is the input empty?)"
                )
            if extent > limit:
                raise ValueError(f"{where}, more than the {limit} a {what} allows in {axis}")
    threads = math.prod(sizes["block"])
    if threads > MAX_THREADS_PER_BLOCK:
        raise ValueError(
            f"{kernel}: block {sizes['block']} has {threads} threads per block, "
            f"more than {MAX_THREADS_PER_BLOCK}"
        )


def check_shared_memory(kernel: str, static_bytes: int) -> None:
    if static_bytes > MAX_SHARED_BYTES_PER_BLOCK:
        raise ValueError(
            f"{kernel}: declares {static_bytes} bytes of static __shared__ memory, more than the "
            f"{MAX_SHARED_BYTES_PER_BLOCK} (48 KiB) a block may use without opt-in"
        )


def check_arguments(
    kernel: str, params: list[Param], args: Sequence[Any], device_array: type[Any]
) -> None:
    """One argument per parameter, each of the kind and dtype the C signature declares."""
    if len(args) != len(params):
        raise ValueError(f"{kernel}: expects {len(params)} arguments, got {len(args)}")
    for param, value in zip(params, args, strict=True):
        if param.is_pointer:
            _check_pointer(kernel, param, value, device_array)
        else:
            _check_scalar(kernel, param, value, device_array)


def _check_pointer(kernel: str, param: Param, value: Any, device_array: type[Any]) -> None:
    where = f"{kernel}: parameter {param.name} ({param.ctype}*)"
    expected = f"{device_array.__module__.split('.')[0]}.{device_array.__name__}"
    if not isinstance(value, device_array):
        if isinstance(value, np.ndarray):
            raise ValueError(
                f"{where} got a host array (numpy.ndarray); the kernel needs a device array "
                f"({expected}): the GPU cannot read host memory"
            )
        raise ValueError(f"{where} is a pointer: expected a {expected}, got {_kind(value)}")
    if not value.flags.c_contiguous:
        raise ValueError(
            f"{kernel}: argument {param.name} must be a C-contiguous ndarray "
            "(the kernel indexes it as a flat buffer)"
        )
    dtype = c_dtype(param.ctype)
    if dtype is not None and value.dtype != dtype:
        raise ValueError(
            f"{where} got a {value.dtype} array, but the kernel reads it as {param.ctype}* "
            f"({dtype} elements)"
        )


def _check_scalar(kernel: str, param: Param, value: Any, device_array: type[Any]) -> None:
    where = f"{kernel}: parameter {param.name} ({param.ctype})"
    dtype = c_dtype(param.ctype)
    if isinstance(value, (np.ndarray, device_array)):
        raise ValueError(f"{where} got an array of shape {value.shape}; pass a NumPy scalar")
    if isinstance(value, (bool, int, float)):
        raise ValueError(
            f"{where} got a Python {type(value).__name__} ({value!r}), whose C width the "
            f"launcher would choose: pass np.{dtype}({value!r})"
        )
    if not isinstance(value, np.generic) or value.dtype != dtype:
        raise ValueError(f"{where} got {_kind(value)}; the kernel takes np.{dtype}")


def _kind(value: Any) -> str:
    """How a message names an argument: its NumPy dtype and value, or its Python type."""
    if isinstance(value, np.generic):
        return f"{value.dtype} ({value!r})"
    return f"{type(value).__module__}.{type(value).__name__} ({value!r})"
