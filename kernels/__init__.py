"""minirad's hand-written operations: arrays in, arrays out. No autograd, no models.

    >>> import kernels
    >>> kernels.available()                       # backends that can run on this machine
    ['numpy', ...]
    >>> ops = kernels.get("numpy")                # an Ops: one method per op, here the reference
    >>> loop = kernels.get("numpy", conv2d="loop")  # choose a version per op folder

One folder per operation (conv2d, maxpool2d, linear, rnn, softmax), one file per backend:

    backend      file in each op folder   runs on
    numpy        reference.py             any CPU: the readable specification
    numba        numba_cpu.py             CPU, compiled by Numba, parallel
    cuda         numba_cuda.py            an NVIDIA GPU, or the Numba CUDA simulator
    cupy         cuda_c.py + <op>.cu      an NVIDIA GPU, CUDA C launched by CuPy
    cuda_c_cpu   cuda_c.py + <op>.cu      the CPU: the same .cu compiled with g++ and emulated

Three words, three things: a *backend* is one of the named ways to run above (BACKENDS, below,
is their registry); `get(name)` returns an `Ops` object (kernels/_ops.py) with one validated
method per op of that backend; `minirad.backend` chooses which backend the engine calls. `get`
raises a ValueError that says why when a backend cannot run here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels._ops import FAMILIES, Ops

# Numba's parallel loops run on an OpenMP thread pool, NumPy's matmuls on OpenBLAS's own pool.
# By default idle OpenMP threads spin for a while before sleeping, and so do OpenBLAS's: when a
# model alternates small parallel kernels with BLAS calls (a decoder step: matmul, softmax,
# matmul...), each pool's spinning threads hold the cores the other pool needs. On the 2-core CI
# machine a report-model training step took 1.2 s this way and 0.24 s with passive waiting
# (re-measured later: 1.49 s and 0.26 s with OpenBLAS on its default two threads; with one BLAS
# thread, as minirad.backend.small_blas runs the report model, both take about 0.25 s). The
# price: an isolated parallel kernel pays to wake the sleeping threads, e.g. a 16x16x64x64 conv
# forward takes 4.6 ms instead of 3.3 (benchmarks/RESULTS.md is measured with this policy).
# libgomp reads this variable when Numba first loads it (the first parallel launch), so it is
# set here, before any kernel runs; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["Ops", "FAMILIES", "available", "get", "why_unavailable", "BACKENDS"]


@dataclass(frozen=True)
class BackendSpec:
    """How to assemble one backend: the file name in each op folder and what it runs on."""

    file: str
    array_types: Callable[[], tuple[type, ...]]
    # Returns None when the backend can run here, else a one-line reason.
    unavailable_reason: Callable[[], str | None]
    # For the CUDA C host files: the runtime passed to their make_versions(runtime).
    runtime: Callable[[], Any] | None = None

    def version_table(self, family: str) -> tuple[dict, str]:
        """(VERSIONS, DEFAULT_VERSION) of this backend's file in op folder `family`."""
        module = importlib.import_module(f"kernels.{family}.{self.file}")
        if self.runtime is not None:
            return module.make_versions(self.runtime()), module.DEFAULT_VERSION
        return module.VERSIONS, module.DEFAULT_VERSION


def _numpy_arrays() -> tuple[type, ...]:
    return (np.ndarray,)


def _always() -> str | None:
    return None


def _numba_missing() -> str | None:
    try:
        import numba  # noqa: F401
    except ImportError as error:
        return f"numba cannot be imported ({error}); pip install numba"
    return None


def _cuda_arrays() -> tuple[type, ...]:
    from kernels.runtime import numba_cuda

    return numba_cuda.array_types()


def _cuda_missing() -> str | None:
    from kernels.runtime import numba_cuda

    return numba_cuda.unavailable_reason()


def _cupy_arrays() -> tuple[type, ...]:
    import cupy

    return (cupy.ndarray,)


def _cupy_missing() -> str | None:
    from kernels.runtime import cupy_module

    return cupy_module.unavailable_reason()


def _emulation_missing() -> str | None:
    from kernels.runtime import cuda_c_runtimes

    return cuda_c_runtimes.emulation_unavailable_reason()


def _emulation_runtime():
    from kernels.runtime import cuda_c_runtimes

    return cuda_c_runtimes.emulation()


def _cupy_runtime():
    from kernels.runtime import cuda_c_runtimes

    return cuda_c_runtimes.cupy_gpu()


BACKENDS: dict[str, BackendSpec] = {
    "numpy": BackendSpec("reference", _numpy_arrays, _always),
    "numba": BackendSpec("numba_cpu", _numpy_arrays, _numba_missing),
    "cuda": BackendSpec("numba_cuda", _cuda_arrays, _cuda_missing),
    "cupy": BackendSpec("cuda_c", _cupy_arrays, _cupy_missing, _cupy_runtime),
    "cuda_c_cpu": BackendSpec("cuda_c", _numpy_arrays, _emulation_missing, _emulation_runtime),
}


def _missing_files(spec: BackendSpec) -> list[str]:
    return [
        f"kernels/{family}/{spec.file}.py"
        for family in FAMILIES
        if importlib.util.find_spec(f"kernels.{family}.{spec.file}") is None
    ]


def why_unavailable(name: str) -> str | None:
    """None if backend `name` can run on this machine, else the reason it cannot."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; known: {sorted(BACKENDS)}"
    missing = _missing_files(BACKENDS[name])
    if missing:
        return f"incomplete in this checkout: no {', '.join(missing)}"
    return BACKENDS[name].unavailable_reason()


def available() -> list[str]:
    """Names of the backends that can run on this machine, reference first."""
    return [name for name in BACKENDS if why_unavailable(name) is None]


def get(name: str = "numpy", **versions: str) -> Ops:
    """The ops of backend `name`, with an optional version chosen per op folder (conv2d="loop")."""
    reason = why_unavailable(name)
    if reason is not None:
        raise ValueError(f"backend {name!r} is not available: {reason}")
    for family in versions:
        if family not in FAMILIES:
            raise ValueError(f"{family}: not an op folder; choose from {sorted(FAMILIES)}")
    spec = BACKENDS[name]
    tables = {family: spec.version_table(family) for family in FAMILIES}
    return Ops(name, tables, spec.array_types(), versions)
