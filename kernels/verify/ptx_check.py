"""Compile every Numba CUDA kernel for real GPUs (sm_75 and sm_90) without a GPU.

The CUDA simulator runs kernels as Python, so it accepts code the real compiler refuses (in
Numba 0.68, for instance, the builtin max(a, b) inside a kernel) and hides silent float64
arithmetic in float32 kernels (a literal 0 is an int64, and int64 * float32 is float64). It also
runs smaller blocks than a GPU does (kernels/runtime/numba_cuda.py: TILE and THREADS_1D are
smaller under the simulator), so the kernels it runs are not the ones a GPU compiles. This
module closes that gap in two steps:

  1. `record_launches()` runs under the simulator: it wraps every kernel of the backend's
     numba_cuda.py files, calls every op of every version in float32 and float64 on tiny
     inputs, and records the Numba types each kernel was launched with and which block-size
     constant its block was (THREADS_1D, or TILE x TILE).
  2. `compile_recorded(launches)` runs in a process with NUMBA_ENABLE_CUDASIM=0, where
     numba_cuda.py takes the GPU's TILE and THREADS_1D (the simulator is off, so its import
     chooses the GPU constants): it imports the same files (now real CUDA dispatchers) and
     compiles each kernel for those types with `cuda.compile_ptx(..., cc=...)` for every
     architecture of nvcc.ARCHES, then runs `ptxas -v` on the PTX (where ptxas is installed)
     and checks spills, shared memory and registers at the real block size (gpu_limits.py).
     Compiling needs no device, only NVVM from the CUDA toolkit; Numba still asks for the
     current device when a kernel calls a device function, so that question is answered with
     a stand-in of the compute capability being compiled for.

`check()` does both and returns {"constants": what the compiling processes used, "launches":
what the simulator recorded, "results": one entry per kernel, signature and architecture}.
`python -m minirad.kernels.verify.ptx_check` prints one line per entry.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from minirad.kernels._ops import FAMILIES
from minirad.kernels.runtime.nvcc import ARCHES, ptxas_path, ptxas_resources
from minirad.kernels.verify.gpu_limits import limit_problems
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


# The block-size constants of numba_cuda.py by name: the simulator records which one a launch
# used, and the compiling process reads its (GPU) value.
BLOCK_CONSTANTS = {
    "THREADS_1D": lambda runtime: runtime.THREADS_1D,
    "TILE x TILE": lambda runtime: runtime.TILE * runtime.TILE,
}


def _block_constant(block_dim) -> str:
    """Which block-size constant a simulated launch used (its thread count if neither)."""
    from minirad.kernels.runtime import numba_cuda

    threads = math.prod(block_dim)
    for name, value in BLOCK_CONSTANTS.items():
        if threads == value(numba_cuda):
            return name
    return str(threads)


def record_launches() -> dict[str, dict[str, list]]:
    """{"family:kernel_attribute": {"signatures": [...], "blocks": [...]}} from running every op
    on the simulator; "blocks" names the block-size constants its launches used."""
    from minirad.kernels.runtime.numba_cuda import cuda, simulator_on

    cuda()
    if not simulator_on():
        raise RuntimeError("record_launches() needs the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen: dict[str, dict[str, set[str]]] = {}
    for family in FAMILIES:
        module = importlib.import_module(f"minirad.kernels.{family}.numba_cuda")
        for attribute, kernel in vars(module).items():
            if isinstance(kernel, FakeCUDAKernel) and not kernel._device:
                _wrap(kernel, f"{family}:{attribute}", seen)
    exercise_every_op("cuda")
    return {
        key: {
            "signatures": [json.loads(s) for s in sorted(record["signatures"])],
            "blocks": sorted(record["blocks"]),
        }
        for key, record in seen.items()
    }


def _wrap(kernel, key: str, seen: dict[str, dict[str, set[str]]]) -> None:
    """Make this one kernel object record its argument types and block each time it runs."""
    base = type(kernel)

    class Recording(base):  # type: ignore[misc, valid-type]
        def __call__(self, *args):
            record = seen.setdefault(key, {"signatures": set(), "blocks": set()})
            record["signatures"].add(json.dumps([_describe(a) for a in args]))
            # kernel[grid, block] stored the block on the kernel object before this call
            block = self.block_dim if isinstance(self.block_dim, tuple) else (self.block_dim,)
            record["blocks"].add(_block_constant(block))
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


def compiling_constants() -> dict[str, object]:
    """The block sizes this process compiles the kernels with (the GPU's, with no simulator)."""
    from minirad.kernels.runtime import numba_cuda

    return {
        "simulator": numba_cuda.simulator_on(),
        "TILE": numba_cuda.TILE,
        "THREADS_1D": numba_cuda.THREADS_1D,
    }


def _threads_per_block(blocks: list[str]) -> int:
    """The largest real block among the recorded block-size constants of one kernel."""
    from minirad.kernels.runtime import numba_cuda

    return max(BLOCK_CONSTANTS[b](numba_cuda) if b in BLOCK_CONSTANTS else int(b) for b in blocks)


def compile_recorded(launches: dict[str, dict[str, list]], arches=ARCHES) -> dict[str, Any]:
    """Compile each recorded (kernel, signature) to PTX for every arch; ptxas -v where present.

    Needs NUMBA_ENABLE_CUDASIM=0. Returns {"constants": compiling_constants(), "results": [...]}.
    """
    from numba import cuda

    with_ptxas = ptxas_path() is not None
    results = []
    for key, record in sorted(launches.items()):
        family, attribute = key.split(":")
        kernel = getattr(importlib.import_module(f"minirad.kernels.{family}.numba_cuda"), attribute)
        threads = _threads_per_block(record["blocks"])
        for sig, arch in ((sig, arch) for sig in record["signatures"] for arch in arches):
            argtypes = tuple(_numba_type(d) for d in sig)
            entry: dict[str, object] = {
                "kernel": key,
                "signature": [str(t) for t in argtypes],
                "arch": arch,
                "threads_per_block": threads,
            }
            try:
                ptx = _compile_ptx(cuda, kernel.py_func, argtypes, arch)
            except Exception as error:
                entry["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                results.append(entry)
                continue
            # float64 arithmetic in a float32 kernel: slow on a GPU, invisible in tests.
            float32_only = all(d[1] != "float64" for d in sig)
            entry["f64_ops"] = len(re.findall(r"\.f64\b", ptx)) if float32_only else 0
            if with_ptxas:
                entry.update(_ptxas_entry(key, ptx, arch, threads))
            results.append(entry)
    return {"constants": compiling_constants(), "results": results}


def _compile_ptx(cuda, py_func, argtypes, arch: str) -> str:
    """cuda.compile_ptx for one architecture ("sm_90" -> cc (9, 0))."""
    import numba.cuda.dispatcher as dispatcher

    cc = (int(arch[3:-1]), int(arch[-1]))
    # Compiling a call to a device function asks for the current device; there is none.
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    ptx, _ = cuda.compile_ptx(py_func, argtypes, cc=cc)
    return ptx


def _ptxas_entry(key: str, ptx: str, arch: str, threads: int) -> dict[str, object]:
    """ptxas -v on one kernel's PTX: its resources and the limits it breaks at `threads`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        try:
            (found,) = ptxas_resources(path, arch, source=key)
        except Exception as error:
            return {"ptxas_error": f"{type(error).__name__}: {str(error)[:300]}"}
    return {
        "registers": found.registers,
        "shared_bytes": found.shared_bytes,
        "spill_bytes": found.spill_store_bytes + found.spill_load_bytes,
        "problems": limit_problems(found, threads),
    }


def check(arches=ARCHES) -> dict[str, Any]:
    """Both steps: record here (simulator), compile in child processes (real targets).

    One child per architecture, run at the same time: compiling is most of the time, and
    Numba compiles each architecture from the start.
    """
    launches = record_launches()
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    children = {arch: _start_compiler(arch, env) for arch in arches}
    reports = {}
    for arch, child in children.items():
        stdout, stderr = child.communicate(json.dumps(launches))
        if child.returncode != 0:
            raise RuntimeError(f"PTX compilation process ({arch}) failed:\n{stderr[-3000:]}")
        reports[arch] = json.loads(stdout.strip().splitlines()[-1])
    constants = [report["constants"] for report in reports.values()]
    if any(c != constants[0] for c in constants):
        raise RuntimeError(f"the compiling processes disagree on their constants: {constants}")
    results = [r for report in reports.values() for r in report["results"]]
    return {"constants": constants[0], "launches": launches, "results": results}


def _start_compiler(arch: str, env: dict[str, str]) -> subprocess.Popen:
    """A child process that reads the launches on stdin and prints compile_recorded's JSON."""
    code = (
        "import json, sys\n"
        "from minirad.kernels.verify.ptx_check import compile_recorded\n"
        f"print(json.dumps(compile_recorded(json.loads(sys.stdin.read()), ({arch!r},))))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def failures(result: dict) -> list[str]:
    """What is wrong with one compiled entry: a compile error, float64 ops, broken limits."""
    if "error" in result:
        return [result["error"]]
    found = list(result.get("problems", []))
    if result.get("ptxas_error"):
        found.append(result["ptxas_error"])
    if result["f64_ops"]:
        found.append(f"{result['f64_ops']} f64 ops in a float32 kernel")
    return found


if __name__ == "__main__":
    report = check()
    print("compiled with", report["constants"])
    failed = 0
    for result in report["results"]:
        problems = failures(result)
        failed += bool(problems)
        regs = f"{result['registers']:3d} regs" if "registers" in result else ""
        status = "; ".join(problems) or f"ok {regs}"
        signature = ", ".join(result["signature"])[:50]
        print(f"{result['kernel']:40} {result['arch']} {signature:50} {status}")
    sys.exit(1 if failed else 0)
