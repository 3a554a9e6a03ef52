"""Which kernels backend the engine uses: `use_backend(name)`, MINIRAD_BACKEND, or "auto".

    import minirad
    minirad.backend.use_backend("numba")          # from now on
    with minirad.backend.use_backend("numpy"):     # only inside the block
        ...

"auto" (the default, also MINIRAD_BACKEND=auto) picks cupy on a machine with a CUDA GPU,
else numba, else numpy (`why_auto()` says why, as `minirad doctor` prints it). Each operation
of minirad.functional asks `active()` for the kernels when its forward runs, so a switch takes
effect at the next operation; the tape remembers that backend and runs the operation's backward
on it, so a switch between a forward and its backward pass does not mix two backends
(minirad.functional.KernelFunction). The kernels themselves never
know about the engine.

Where the data lives. The CPU backends compute on NumPy arrays in host memory; the GPU backends
(cupy, and cuda on a GPU) on CuPy arrays in device memory, and refuse host arrays. A model is
moved once, `model.to()` (minirad.nn.Module.to), and each batch once, `to_device(images)`;
results come back with `minirad.autograd.to_host`. Both are free on the CPU backends.

A side effect to know of: importing `kernels`, as this module does (and so minirad.functional,
minirad.nn and everything built on them), sets the environment variable OMP_WAIT_POLICY to
PASSIVE unless it is already set. Numba's OpenMP threads then sleep when idle instead of
spinning on the cores that NumPy's BLAS needs (measured in kernels/__init__.py). OpenMP
libraries loaded later (PyTorch's too) and child processes see the same setting; set
OMP_WAIT_POLICY before the import to choose otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from minirad import kernels
from minirad.autograd import move_to

AUTO_ORDER = ("cupy", "numba", "numpy")

_active: kernels.Ops | None = None


def resolve(name: str) -> str:
    """The concrete backend a name stands for ("auto" -> the best one available here)."""
    if name != "auto":
        return name
    for candidate in AUTO_ORDER:
        if kernels.why_unavailable(candidate) is None:
            return candidate
    return "numpy"


def why_auto() -> str:
    """One line: the backend "auto" picks here, and why each one before it in AUTO_ORDER
    cannot run."""
    skipped: list[str] = []
    for candidate in AUTO_ORDER:
        reason = kernels.why_unavailable(candidate)
        if reason is None:
            passed = "; ".join(skipped)
            return f"{candidate}" + (f" (not {passed})" if passed else " (the first choice)")
        skipped.append(f"{candidate}: {reason}")
    return "numpy (" + "; ".join(skipped) + ")"


def active() -> kernels.Ops:
    """The kernels the engine calls now (chosen from MINIRAD_BACKEND on first use)."""
    global _active
    if _active is None:
        _active = kernels.get(resolve(os.environ.get("MINIRAD_BACKEND", "auto")))
    return _active


class _Switch:
    """Returned by use_backend: the switch is already made; `with` restores the previous one."""

    def __init__(self, previous: kernels.Ops | None):
        self._previous = previous

    def __enter__(self) -> kernels.Ops:
        return active()

    def __exit__(self, *exc) -> None:
        global _active
        _active = self._previous


def use_backend(name: str, **versions: str) -> _Switch:
    """Make backend `name` (with optional kernel versions) the active one.

    Usable as a statement (switches for good) or as a context manager (switches back on exit).
    Raises ValueError, naming the reason, when the backend cannot run here.
    """
    return use_ops(kernels.get(resolve(name), **versions))


def use_ops(ops: kernels.Ops) -> _Switch:
    """Make an Ops object the engine's kernels, as use_backend does for a named backend.

    For an Ops assembled by hand rather than by kernels.get: the launch recorder
    (kernels/runtime/launch_record.py) runs a training step through one to see its launches.
    """
    global _active
    previous = _active
    _active = ops
    return _Switch(previous)


def array_module(ops: kernels.Ops | None = None) -> ModuleType:
    """numpy, or cupy on a GPU backend: the module that makes arrays where `ops` (default: the
    active backend) computes."""
    return (ops or active()).xp


def to_device(array: Any, ops: kernels.Ops | None = None) -> Any:
    """`array` where backend `ops` (default: the active one) computes; None passes through.

    Host data (a NumPy array, a list, a number) becomes a device array with one copy on a GPU
    backend; a device array there is returned as it is. On a CPU backend the result is a NumPy
    array: host data as it is (no copy), a device array copied back.
    """
    if array is None:
        return None
    return move_to(array, array_module(ops))


@contextlib.contextmanager
def small_blas(threads: int = 1) -> Iterator[None]:
    """Run the block with NumPy's BLAS limited to `threads` threads (threadpoolctl).

    The report model multiplies small matrices (a batch of 32 against a few hundred units),
    thousands of times per epoch, between Numba's parallel kernels. A BLAS thread pool gains
    nothing on such sizes, and its idle threads spin: on a 2-core machine shared with one other
    busy process, a training epoch took 249 s with OpenBLAS's default two threads and 3 s with
    one, and greedy decoding of 200 images 18.8 s against 0.4 s (measured for
    tutorials/10). threadpoolctl finds the BLAS library NumPy loaded (OpenBLAS, MKL, ...) and
    calls its own set-threads function, then restores the previous setting on exit.

    Inside that limit a block may ask for more: the fused decoder's products, with no Numba
    kernel running between them, gain from two threads (minirad/models/fused_decoder.py,
    DECODER_BLAS_THREADS, where it is measured); the previous limit comes back on exit.

    The libraries are found once per process (_blas_controller): threadpoolctl's search walks
    every loaded shared object and took 1.7 ms a call, 15% of a one-image report.
    """
    with _blas_controller().limit(limits=threads, user_api="blas"):
        yield


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the thread pools loaded now (NumPy's BLAS among them)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
