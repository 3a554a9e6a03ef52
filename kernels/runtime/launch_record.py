"""Record the CUDA C launches of a computation without running a single kernel.

    launches = []
    ops = recording_ops(launches)          # a kernels.Ops of the CUDA C host code
    y = ops.conv2d_forward(x, w, b, 1, 1)  # y is all zeros; launches holds what ran
    launches[0]   # Launch(kernel='conv2d_forward_tiled_f32', grid=(2048, 1, 1), ...)

The host code of every op folder's cuda_c.py (allocate outputs, choose grid and block, launch)
runs as it does on a GPU, against a third runtime beside CuPy and the g++ emulation
(cuda_c_runtimes.py): its `load(path)` returns a `RecordingModule`, whose launch checks the
launch with the validator both real runtimes use (launch_check.check_launch: the GPU's limits,
every argument against the kernel's C signature) and then records it instead of running it.
So a whole training step at full size costs only the host code's time, and every launch in it
is one a GPU would accept.

Its array module is NumPy, except that `empty` and `empty_like` return zeros: no kernel fills
the outputs, and zeros (unlike uninitialised memory) keep whatever the caller computes from
them on the host finite and the same on every run. Only the shapes are meaningful.

benchmarks/occupancy.py tabulates such a record; tests/test_geometry.py asserts that every
launch of a training step of the bundled report model gives a GPU enough blocks to fill it.
"""

from __future__ import annotations

import math
import types
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minirad import kernels
from minirad.kernels.runtime.cuda_c_runtimes import CudaCRuntime
from minirad.kernels.runtime.cuda_source import CudaSource
from minirad.kernels.runtime.grids import dim3
from minirad.kernels.runtime.launch_check import check_launch


@dataclass(frozen=True)
class Launch:
    """One recorded launch: the kernel's entry point and its geometry as CUDA's dim3."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]

    @property
    def blocks(self) -> int:
        """Blocks in the grid: what a GPU's streaming multiprocessors share out."""
        return math.prod(self.grid)

    @property
    def threads_per_block(self) -> int:
        return math.prod(self.block)


class RecordingModule:
    """A .cu file whose kernels are validated and recorded, never run."""

    def __init__(self, path: Path, launches: list[Launch]) -> None:
        self.source = CudaSource.read(path)
        self.launches = launches

    def launch(self, name: str, grid, block, args) -> None:
        # A NumPy array is the device array here, as in the emulation.
        check_launch(self.source, name, grid, block, args, device_array=np.ndarray)
        self.launches.append(Launch(name, dim3(grid), dim3(block)))


class _ZeroedNumpy(types.ModuleType):
    """NumPy, except that empty() and empty_like() return zeros (see the module docstring)."""

    empty = staticmethod(np.zeros)
    empty_like = staticmethod(np.zeros_like)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def recording_runtime(launches: list[Launch]) -> CudaCRuntime:
    """A runtime for the cuda_c.py host code that appends each launch to `launches`."""
    modules: dict[Path, RecordingModule] = {}

    def load(path) -> RecordingModule:
        path = Path(path).resolve()
        if path not in modules:  # each source is read once, as the real runtimes do
            modules[path] = RecordingModule(path, launches)
        return modules[path]

    return CudaCRuntime("recording", _ZeroedNumpy("numpy_zeroed"), load)


def recording_ops(launches: list[Launch], **versions: str) -> kernels.Ops:
    """Every op of the CUDA C backends, a version chosen per op folder if given, recording."""
    return cuda_c_ops(recording_runtime(launches), **versions)


def cuda_c_ops(runtime: CudaCRuntime, **versions: str) -> kernels.Ops:
    """Every op of the CUDA C host code (the cuda_c.py files) on `runtime`, whose arrays are
    NumPy's. The tables are built as kernels.get builds the emulation's
    (BackendSpec.version_table), with `runtime` in place of the emulation's."""
    spec = replace(kernels.BACKENDS["cuda_c_cpu"], runtime=lambda: runtime)
    tables = {family: spec.version_table(family) for family in kernels.FAMILIES}
    return kernels.Ops(runtime.name, tables, (np.ndarray,), versions)


def distinct(launches: list[Launch]) -> list[tuple[Launch, int]]:
    """Each different launch once, with how many times it occurs, in order of first occurrence."""
    return list(Counter(launches).items())
