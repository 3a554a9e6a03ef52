"""Compile every Numba CUDA kernel for a real GPU (sm_75 PTX) without a GPU.

The CUDA simulator runs kernels as Python, so it accepts code the real compiler refuses (in
Numba 0.68, for instance, the builtin max(a, b) inside a kernel) and hides silent float64
arithmetic in float32 kernels (a literal 0 is an int64, and int64 * float32 is float64). This
module closes that gap in two steps:

  1. `record_signatures()` runs under the simulator: it wraps every kernel of the backend's
     numba_cuda.py files, calls every op of every version in float32 and float64 on tiny
     inputs, and records the Numba types each kernel was launched with.
  2. `compile_recorded(signatures)` runs in a process with NUMBA_ENABLE_CUDASIM=0: it imports
     the same files (now real CUDA dispatchers) and compiles each kernel for those types with
     `cuda.compile_ptx(..., cc=(7, 5))`. Compiling needs no device, only NVVM from the CUDA
     toolkit; Numba still asks for the current device when a kernel calls a device function,
     so that question is answered with a stand-in of compute capability 7.5.

`python -m minirad.kernels.verify.ptx_check` does both and prints one line per kernel and signature.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from minirad.kernels._ops import FAMILIES
from minirad.kernels.verify.smoke import exercise_every_op

# -- step 1: under the simulator ----------------------------------------------------------------


def _describe(value) -> list:
    """A JSON-able description of a kernel argument's Numba type."""
    if hasattr(value, "dtype") and hasattr(value, "ndim") and value.ndim > 0:
        layout = "C" if value.flags.c_contiguous else "A"
        return ["array", np.dtype(value.dtype).name, int(value.ndim), layout]
    if isinstance(value, (bool, np.bool_)):
        return ["scalar", "bool"]
    if isinstance(value, (int, np.integer)):
        return ["scalar", "int64" if isinstance(value, int) else np.dtype(type(value)).name]
    return ["scalar", "float64" if isinstance(value, float) else np.dtype(type(value)).name]


def record_signatures() -> dict[str, list[list]]:
    """{"family:kernel_attribute": [signature, ...]} from running every op on the simulator."""
    from minirad.kernels.runtime.numba_cuda import cuda, simulator_on

    cuda()
    if not simulator_on():
        raise RuntimeError("record_signatures() needs the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen: dict[str, set[str]] = {}
    for family in FAMILIES:
        module = importlib.import_module(f"minirad.kernels.{family}.numba_cuda")
        for attribute, kernel in vars(module).items():
            if isinstance(kernel, FakeCUDAKernel) and not kernel._device:
                _wrap(kernel, f"{family}:{attribute}", seen)
    exercise_every_op("cuda")
    return {key: [json.loads(s) for s in sorted(sigs)] for key, sigs in seen.items()}


def _wrap(kernel, key: str, seen: dict[str, set[str]]) -> None:
    """Make this one kernel object record its argument types each time it is launched."""
    base = type(kernel)

    class Recording(base):  # type: ignore[misc, valid-type]
        def __call__(self, *args):
            seen.setdefault(key, set()).add(json.dumps([_describe(a) for a in args]))
            return base.__call__(self, *args)

    kernel.__class__ = Recording


# -- step 2: the real compiler ------------------------------------------------------------------


def _numba_type(description):
    from numba import types

    if description[0] == "array":
        _, dtype, ndim, layout = description
        return types.Array(getattr(types, dtype if dtype != "bool" else "boolean"), ndim, layout)
    name = description[1]
    return types.boolean if name == "bool" else getattr(types, name)


def compile_recorded(signatures: dict[str, list[list]], cc=(7, 5)) -> list[dict]:
    """Compile each recorded (kernel, signature) to PTX. Needs NUMBA_ENABLE_CUDASIM=0."""
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    # Compiling a call to a device function asks for the current device; there is none.
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    results = []
    for key, sigs in sorted(signatures.items()):
        family, attribute = key.split(":")
        kernel = getattr(importlib.import_module(f"minirad.kernels.{family}.numba_cuda"), attribute)
        for sig in sigs:
            argtypes = tuple(_numba_type(d) for d in sig)
            float32_only = all(d[1] != "float64" for d in sig)
            entry: dict[str, object] = {"kernel": key, "signature": [str(t) for t in argtypes]}
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=cc)
            except Exception as error:
                entry["error"] = f"{type(error).__name__}: {str(error)[:300]}"
            else:
                # float64 arithmetic in a float32 kernel: slow on a GPU, invisible in tests.
                entry["f64_ops"] = len(re.findall(r"\.f64\b", ptx)) if float32_only else 0
            results.append(entry)
    return results


def check() -> list[dict]:
    """Both steps: record here (simulator), compile in a child process (real target)."""
    signatures = record_signatures()
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    code = (
        "import json, sys\n"
        "from kernels.verify.ptx_check import compile_recorded\n"
        "print(json.dumps(compile_recorded(json.loads(sys.stdin.read()))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(signatures),
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"PTX compilation process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    failures = 0
    for result in check():
        status = result.get("error") or f"ok, {result['f64_ops']} f64 ops"
        failures += "error" in result or result["f64_ops"] > 0
        print(f"{result['kernel']:45} {', '.join(result['signature'])[:60]:60} {status}")
    sys.exit(1 if failures else 0)
