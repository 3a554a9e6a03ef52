"""Execute the CUDA C sources on the CPU: compile a .cu with g++ against cuda_emu.h, call it.

    module = load("kernels/linear/linear.cu")
    module.launch("matmul_tiled_f32", grid=(4, 2), block=(16, 16), args=(a, b, c, np.int32(M)))

grid and block are ints or tuples of up to three ints, as in CUDA (grids.dim3).

For every `extern "C" __global__ void name(params)` in the source (read by
cuda_source.parse_kernels), a launcher `emu_launch_name(gx, gy, gz, bx, by, bz, params)` is
generated, the source and the launchers are compiled into a shared library with
`g++ -std=c++20 -include cuda_emu.h`, and the library is called through ctypes. NumPy arrays are
passed as pointers to their data, NumPy scalars by value with their C type.

The emulation would run launches a GPU refuses (a 0-sized grid, 2048 threads in a block) and
read arguments a GPU would misread (an np.int64 for an `int`), so every launch is first checked
as CuPy's are, by launch_check.check_launch: the GPU's limits, and each argument against the
kernel's C signature (a C-contiguous array of the pointed-to dtype, a NumPy scalar of the exact
C type). Here a NumPy array counts as the device array.

Compiled libraries are cached by a hash of the source, the header and the compiler flags, in
$MINIRAD_CACHE_DIR (default ~/.cache/minirad), written to a temporary name and renamed, so
concurrent test processes never load a half-written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from minirad.files import atomic_writer  # standard library only: no engine code reaches the kernels
from minirad.kernels.runtime.cuda_source import SCALAR_TYPES, CudaSource, Param
from minirad.kernels.runtime.grids import dim3
from minirad.kernels.runtime.launch_check import check_launch

HEADER = Path(__file__).with_name("cuda_emu.h")
CXX_FLAGS = ("-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w")


def launcher_source(cu_path: Path, kernels: dict[str, list[Param]]) -> str:
    lines = [f'#include "{cu_path.resolve()}"', ""]
    for name, params in kernels.items():
        decl = ", ".join(
            f"{p.ctype}* {p.name}" if p.is_pointer else f"{p.ctype} {p.name}" for p in params
        )
        call = ", ".join(p.name for p in params)
        lines += [
            f'extern "C" void emu_launch_{name}(unsigned gx, unsigned gy, unsigned gz, '
            f"unsigned bx, unsigned by, unsigned bz{', ' + decl if decl else ''}) {{",
            f"    emu::launch(dim3(gx, gy, gz), dim3(bx, by, bz), [=] {{ {name}({call}); }});",
            "}",
            "",
        ]
    return "\n".join(lines)


def cache_dir() -> Path:
    root = os.environ.get("MINIRAD_CACHE_DIR") or Path.home() / ".cache" / "minirad"
    path = Path(root) / "cuda_c_cpu"
    path.mkdir(parents=True, exist_ok=True)
    return path


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


class EmulatedModule:
    """A compiled .cu: launch its kernels by name, like CuPy's RawModule.get_function."""

    def __init__(self, cu_path: Path, library: ctypes.CDLL, source: CudaSource):
        self.path = cu_path
        self.source = source
        self._library = library

    def launch(self, name: str, grid, block, args) -> None:
        """Run kernel `name`, once validated as a GPU would need it (launch_check.py): here a
        NumPy array is the device array."""
        check_launch(self.source, name, grid, block, args, device_array=np.ndarray)
        c_args = [ctypes.c_uint(v) for v in (*dim3(grid), *dim3(block))]
        for param, value in zip(self.source.kernels[name], args, strict=True):
            c_args.append(_to_c(param, value))
        getattr(self._library, f"emu_launch_{name}")(*c_args)


def _to_c(param: Param, value):
    """A validated argument as ctypes passes it: an array as the address of its data."""
    if param.is_pointer:
        return ctypes.c_void_p(value.ctypes.data)
    return SCALAR_TYPES[param.ctype](value.item())


_LOADED: dict[Path, EmulatedModule] = {}
_LOCK = threading.Lock()


def load(cu_path: str | Path) -> EmulatedModule:
    """Compile (or fetch from the cache) and load one .cu file."""
    cu_path = Path(cu_path).resolve()
    with _LOCK:
        if cu_path not in _LOADED:
            _LOADED[cu_path] = _build(cu_path)
        return _LOADED[cu_path]


def _build(cu_path: Path) -> EmulatedModule:
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("g++ not found: the cuda_c_cpu backend compiles .cu files with it")
    source = CudaSource.read(cu_path)
    launchers = launcher_source(cu_path, source.kernels)
    digest = hashlib.sha256(
        "\0".join([source.text, HEADER.read_text(), launchers, cxx, *CXX_FLAGS]).encode()
    ).hexdigest()[:20]
    library = cache_dir() / f"{cu_path.stem}-{digest}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory() as tmp:
            wrapper = Path(tmp) / f"{cu_path.stem}_launch.cpp"
            wrapper.write_text(launchers)
            partial = Path(tmp) / "out.so"
            command = [cxx, *CXX_FLAGS, "-include", str(HEADER), str(wrapper), "-o", str(partial)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{cu_path.name}: g++ failed:\n{result.stderr[-4000:]}")
            # Another process never sees half a library (minirad's one atomic writer: a unique
            # temporary, fsync, rename; a killed build's temporary is swept by the next one).
            with partial.open("rb") as built, atomic_writer(library) as staged:
                shutil.copyfileobj(built, staged)
    return EmulatedModule(cu_path, ctypes.CDLL(str(library)), source)
