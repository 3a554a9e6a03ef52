"""minirad's hand-written operations: arrays in, arrays out. No autograd, no models.

    >>> import kernels
    >>> kernels.available()                       # backends that can run on this machine
    ['numpy', ...]
    >>> ops = kernels.get("numpy")                # the reference, the specification
    >>> loop = kernels.get("numpy", conv2d="loop")  # choose a version per op folder

One folder per operation (conv2d, maxpool2d, linear, rnn, softmax), one file per backend:

    backend      file in each op folder   runs on
    numpy        reference.py             any CPU: the readable specification
    numba        numba_cpu.py             CPU, compiled by Numba, parallel
    cuda         numba_cuda.py            an NVIDIA GPU, or the Numba CUDA simulator
    cupy         cuda_c.py + <op>.cu      an NVIDIA GPU, CUDA C launched by CuPy
    cuda_c_cpu   cuda_c.py + <op>.cu      the CPU: the same .cu compiled with g++ and emulated

The registry below lists the backends this checkout holds; `get` raises a ValueError that says
why when a backend cannot run here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kernels._backend import FAMILIES, Backend

__all__ = ["Backend", "FAMILIES", "available", "get", "why_unavailable", "BACKENDS"]


@dataclass(frozen=True)
class BackendSpec:
    """How to assemble one backend: the file name in each op folder and what it runs on."""

    file: str
    array_types: Callable[[], tuple[type, ...]]
    # Returns None when the backend can run here, else a one-line reason.
    unavailable_reason: Callable[[], str | None]


def _numpy_arrays() -> tuple[type, ...]:
    return (np.ndarray,)


def _always() -> str | None:
    return None


BACKENDS: dict[str, BackendSpec] = {
    "numpy": BackendSpec("reference", _numpy_arrays, _always),
}


def why_unavailable(name: str) -> str | None:
    """None if backend `name` can run on this machine, else the reason it cannot."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; known: {sorted(BACKENDS)}"
    return BACKENDS[name].unavailable_reason()


def available() -> list[str]:
    """Names of the backends that can run on this machine, reference first."""
    return [name for name in BACKENDS if why_unavailable(name) is None]


def get(name: str = "numpy", **versions: str) -> Backend:
    """The backend `name`, with an optional version chosen per op folder (e.g. conv2d="loop")."""
    reason = why_unavailable(name)
    if reason is not None:
        raise ValueError(f"backend {name!r} is not available: {reason}")
    for family in versions:
        if family not in FAMILIES:
            raise ValueError(f"{family}: not an op folder; choose from {sorted(FAMILIES)}")
    spec = BACKENDS[name]
    modules = {
        family: importlib.import_module(f"kernels.{family}.{spec.file}") for family in FAMILIES
    }
    return Backend(name, modules, spec.array_types(), versions)
