"""Every Numba CUDA kernel is compiled with cache=True: on a GPU, a new process loads it.

Numba compiles a kernel the first time it is launched with new argument types, which takes
seconds per kernel; with cache=True it writes the machine code to __pycache__ and the next
process loads it instead. The simulator ignores the flag, so the check is made where it means
something: in a child process with NUMBA_ENABLE_CUDASIM=0 (no GPU needed: no kernel is
compiled), every kernel of every numba_cuda.py is a real CUDA dispatcher, and its cache must be
Numba's on-disk CUDACache, not the NullCache of a kernel compiled without the flag. (Device
functions are compiled into the kernels that call them, so the kernels' cache holds them.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from minirad.kernels._ops import FAMILIES

CHILD = """
import importlib, json, sys
from numba.cuda.dispatcher import CUDADispatcher
caches = {}
for family in sys.argv[1:]:
    module = importlib.import_module(f"minirad.kernels.{family}.numba_cuda")
    for name, value in vars(module).items():
        if isinstance(value, CUDADispatcher) and not value.targetoptions.get("device"):
            caches[f"{family}.{name}"] = type(value._cache).__name__
print(json.dumps(caches))
"""


def test_every_numba_cuda_kernel_is_cached_on_disk():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *FAMILIES], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    caches = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(caches) >= 20, f"too few kernels found: {sorted(caches)}"
    uncached = sorted(name for name, cache in caches.items() if cache != "CUDACache")
    assert not uncached, f"kernels compiled without cache=True: {uncached}"
