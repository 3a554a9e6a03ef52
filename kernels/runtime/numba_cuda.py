"""Plumbing of the `cuda` backend (Numba CUDA): GPU or simulator, arrays, launch geometry.

On a machine without an NVIDIA driver the backend runs under Numba's CUDA simulator, which
executes every CUDA thread as a Python thread (shared memory, syncthreads and atomics work; it
is slow, so only tiny shapes are practical). The simulator must be switched on before
numba.cuda is first imported; importing this module does that, unless the user decided already
by setting NUMBA_ENABLE_CUDASIM themselves (or imported numba.cuda first). Note that
`cuda.is_available()` is True under the simulator: `simulator_on()` is the test to use.

The block sizes of this backend are chosen here and nowhere else: kernels take their block shape
from these constants (compile-time constants, since shared-memory arrays need a constant size),
and the host code derives grids with `grid_1d` / `grid_2d` (the arithmetic is in grids.py, shared
with the CUDA C host code). Under the simulator the blocks are smaller, because every simulated
thread is an OS thread.

Every kernel of the numba_cuda.py files is compiled with `@cuda.jit(cache=True)`: on a GPU,
Numba writes each compiled kernel to the __pycache__ beside its source and a later process
loads it instead of compiling it again (seconds per kernel); the simulator ignores the flag
(tests/test_numba_cache.py checks it on the real dispatchers). Numba notices a change to the
kernel's own file, not to a constant it imports from another one: after editing TILE or
THREADS_1D below, delete the kernels' cached *.nbi / *.nbc files.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
import threading
from types import ModuleType

import numpy as np
from numba.core import types as numba_types
from numba.np import numpy_support

from minirad.kernels.runtime import grids


def _driver_present() -> bool:
    return ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidia0")


def _choose_simulator() -> None:
    """Switch the simulator on where there is no GPU driver, unless that is decided already."""
    undecided = "numba.cuda" not in sys.modules and "NUMBA_ENABLE_CUDASIM" not in os.environ
    if undecided and not _driver_present():
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        import numba.core.config

        numba.core.config.reload_config()


def cuda() -> ModuleType:
    """numba.cuda: the simulator where there is no GPU driver (chosen at import), else the GPU."""
    from numba import cuda as numba_cuda

    if simulator_on():
        _make_simulated_shared_arrays_thread_safe()
    return numba_cuda


_SHARED_LOCK = threading.Lock()


def _make_simulated_shared_arrays_thread_safe() -> None:
    """Close a race in the simulator's cuda.shared.array (numba's FakeCUDAShared.array).

    The simulator gives every thread of a block the same NumPy array for one
    `cuda.shared.array(...)` line by looking the line up in a dict and creating the array if it
    is missing, in two steps without a lock. Two threads arriving together can each create
    their own "shared" tile, and a tiled kernel then reads a tile that half the block never
    wrote: a rare, flaky wrong result (seen: 1 in ~40 runs of a tiled matmul; 48 in 50 with the
    threads made to yield inside that window). The replacement does the same lookup under a
    lock. It must find the kernel's line itself (sys._getframe(1)): the simulator keys the
    arrays by the calling line, so wrapping the original would give them all one key.
    """
    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared
    if getattr(shared.array, "_minirad_locked", False):
        return
    original = shared.array

    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one buffer for all, no lookup involved
            return original(self, shape, dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with _SHARED_LOCK:
            if caller not in self._allocations:
                if isinstance(dtype, numba_types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]

    array._minirad_locked = True  # type: ignore[attr-defined]
    shared.array = array  # type: ignore[method-assign]


def simulator_on() -> bool:
    import numba.core.config

    return bool(numba.core.config.ENABLE_CUDASIM)  # type: ignore[attr-defined]


def unavailable_reason() -> str | None:
    try:
        numba_cuda = cuda()
    except Exception as error:
        return f"numba.cuda cannot be imported ({type(error).__name__}: {error})"
    if simulator_on():
        return None
    if not numba_cuda.is_available():
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "0":
            return "no CUDA GPU, and NUMBA_ENABLE_CUDASIM is set to 0"
        return (
            "no CUDA GPU, and numba.cuda was imported before minirad could switch the "
            "simulator on; set NUMBA_ENABLE_CUDASIM=1"
        )
    if xp() is np:
        return "a GPU is present but cupy is not installed (pip install minirad[gpu])"
    return None


def xp() -> ModuleType:
    """The array module of this backend: CuPy on a GPU, NumPy under the simulator.

    Under the simulator CuPy is used where it can allocate: the test suite's device stand-in
    (tests/device_standin.py) is such a CuPy, and the simulator then runs on device arrays as
    a GPU would (numba takes CuPy arrays through __cuda_array_interface__). Chosen on the
    first call (a failed `import cupy` searches the path again each time) and kept.
    """
    global _XP
    if _XP is None:
        _XP = _choose_array_module()
    return _XP


_XP: ModuleType | None = None


def _choose_array_module() -> ModuleType:
    try:
        import cupy
    except ImportError:
        return np
    if simulator_on() and not _cupy_can_allocate(cupy):
        return np
    return cupy


def _cupy_can_allocate(cupy: ModuleType) -> bool:
    try:
        return bool(cupy.is_available())
    except Exception:  # a CUDA runtime that fails to load raises its own errors
        return False


def array_types() -> tuple[type, ...]:
    return (xp().ndarray,)


# -- block sizes: the one place they are chosen ----------------------------------------------

# Decided at import, because the constants below depend on it and kernels compile them in.
_choose_simulator()
THREADS_1D = 32 if simulator_on() else 256  # threads per block of elementwise / row kernels
TILE = 4 if simulator_on() else 16  # side of the square tiles of tiled kernels (TILE x TILE)


def grid_1d(n: int, threads: int = THREADS_1D) -> tuple[int, int]:
    """(blocks, threads) covering n items, one thread each (grids.grid_1d at this block size)."""
    return grids.grid_1d(n, threads)


def grid_2d(rows: int, cols: int, tile: int = TILE) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of tile x tile blocks over a rows x cols output; x runs along cols."""
    return grids.grid_2d(rows, cols, tile)
