"""Compile every .cu with NVRTC, the compiler behind CuPy's RawModule, with CuPy's own options.

On a GPU the `cupy` backend never runs nvcc: `cupy.RawModule(code=..., options=NVRTC_OPTIONS)`
hands the source to NVRTC, the CUDA runtime compiler, with options CuPy adds itself. nvcc
accepting a source (test_cuda_sources.py) does not prove that NVRTC does: NVRTC has no host
compiler and no system headers, CuPy makes every function a device function
(--device-as-default-execution-space) and flushes float32 denormals to zero (-ftz=true). NVRTC
is a library that needs no GPU (the pip wheel nvidia-cuda-nvrtc-cu12 is the one
`cupy-cuda12x[ctk]` installs), so this compiles every source the way CuPy would, through ctypes:

    find_libnvrtc()                   the libnvrtc.so to load, or None where there is none
    cupy_options(arch)                the options CuPy passes for a GPU of that architecture
    compile_cuda(text, name, arch)    NVRTC's PTX, cubin size, log and ptxas's resources

    python -m minirad.kernels.verify.nvrtc_check     one line per .cu and architecture
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from minirad.kernels.runtime.cupy_module import NVRTC_OPTIONS
from minirad.kernels.runtime.nvcc import ARCHES, KernelResources, cuda_sources, parse_ptxas_log

# Not a compile option of CuPy's: it makes NVRTC print ptxas's report (registers, shared memory,
# spills) into the program log, without changing the code generated.
PTXAS_VERBOSE = "--ptxas-options=-v"


def cupy_options(arch: str) -> tuple[str, ...]:
    """The NVRTC options of `cupy.RawModule(code=..., options=NVRTC_OPTIONS)` on an `arch` GPU.

    As CuPy 14 assembles them: our options (they name a C++ standard, so CuPy adds none), then
    -ftz=true (cupy/cuda/compiler.py, _compile_with_cache_cuda), -arch=sm_XX (CuPy compiles
    straight to a cubin for every architecture its NVRTC knows, _get_arch_for_options_for_nvrtc)
    and --device-as-default-execution-space (_compile_using_nvrtc_no_warning). Left out: the
    -I directories CuPy adds (its bundled CCCL and headers, the CUDA headers), since minirad's
    .cu files include no header.
    """
    return (*NVRTC_OPTIONS, "-ftz=true", f"-arch={arch}", "--device-as-default-execution-space")


def _library_candidates() -> list[str]:
    """Where libnvrtc.so may be: NVIDIA's pip wheels, a CUDA toolkit, the loader's path."""
    found = []
    spec = importlib.util.find_spec("nvidia")  # the namespace package of NVIDIA's wheels
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        # nvidia/cuda_nvrtc/lib (the CUDA 12 wheel), nvidia/cu13/lib (the CUDA 13 wheels)
        found += sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")))
    for home in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            found += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    if system := ctypes.util.find_library("nvrtc"):
        found.append(system)
    return found


@functools.cache
def find_libnvrtc() -> str | None:
    """The first libnvrtc that loads, or None."""
    for candidate in _library_candidates():
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        return candidate
    return None


@functools.cache
def _nvrtc() -> ctypes.CDLL:
    path = find_libnvrtc()
    if path is None:
        raise RuntimeError("no libnvrtc found (pip install nvidia-cuda-nvrtc-cu12)")
    library = ctypes.CDLL(path)
    library.nvrtcGetErrorString.restype = ctypes.c_char_p
    return library


def nvrtc_version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    _call("nvrtcVersion", ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def _call(function: str, *args) -> None:
    """Call an NVRTC function; raise RuntimeError with its error name if it fails."""
    status = getattr(_nvrtc(), function)(*args)
    if status != 0:  # NVRTC_SUCCESS
        raise RuntimeError(f"{function}: {_nvrtc().nvrtcGetErrorString(status).decode()}")


@dataclass(frozen=True)
class NvrtcResult:
    ptx: str
    cubin_bytes: int
    log: str
    resources: list[KernelResources]  # ptxas's report, parsed by runtime/nvcc.py


class NvrtcError(RuntimeError):
    """NVRTC refused a source; the message is its log."""


def compile_cuda(text: str, name: str, arch: str) -> NvrtcResult:
    """Compile one CUDA source with NVRTC and cupy_options(arch); NvrtcError with its log."""
    program = ctypes.c_void_p()
    _call("nvrtcCreateProgram", ctypes.byref(program), text.encode(), name.encode(), 0, None, None)
    try:
        options = [o.encode() for o in (*cupy_options(arch), PTXAS_VERBOSE)]
        status = _nvrtc().nvrtcCompileProgram(
            program, len(options), (ctypes.c_char_p * len(options))(*options)
        )
        log = _read(program, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog").decode()
        if status != 0:
            error = _nvrtc().nvrtcGetErrorString(status).decode()
            raise NvrtcError(f"{name} ({arch}): {error}\n{log[-4000:]}")
        ptx = _read(program, "nvrtcGetPTXSize", "nvrtcGetPTX").decode()
        cubin_size = ctypes.c_size_t()
        _call("nvrtcGetCUBINSize", program, ctypes.byref(cubin_size))
    finally:
        _call("nvrtcDestroyProgram", ctypes.byref(program))
    return NvrtcResult(ptx, cubin_size.value, log, parse_ptxas_log(log, name))


def _read(program: ctypes.c_void_p, size_function: str, read_function: str) -> bytes:
    """One of the program's outputs (log, PTX), by NVRTC's size-then-copy pair of calls."""
    size = ctypes.c_size_t()
    _call(size_function, program, ctypes.byref(size))
    buffer = ctypes.create_string_buffer(size.value)
    _call(read_function, program, buffer)
    return buffer.value


def compile_file(cu_path: Path, arch: str) -> NvrtcResult:
    return compile_cuda(cu_path.read_text(), cu_path.name, arch)


def main() -> int:
    if find_libnvrtc() is None:
        print("nvrtc_check: no libnvrtc (pip install nvidia-cuda-nvrtc-cu12)", file=sys.stderr)
        return 1
    print(f"NVRTC {'.'.join(map(str, nvrtc_version()))} at {find_libnvrtc()}")
    failed = 0
    for source in cuda_sources():
        for arch in ARCHES:
            try:
                result = compile_file(source, arch)
            except NvrtcError as error:
                failed += 1
                print(error)
                continue
            most = max(k.registers for k in result.resources)
            print(
                f"{source.name:13} {arch}: {len(result.resources)} kernels, cubin "
                f"{result.cubin_bytes} bytes, at most {most} registers/thread"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
