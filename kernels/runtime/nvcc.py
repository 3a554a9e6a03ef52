"""Compile the CUDA C sources with the real toolchain: `nvcc -ptx`, then `ptxas -v`.

No GPU is needed to compile, so this is how CI proves that every .cu is valid CUDA for the
architectures minirad targets, and how the register and shared-memory use of every kernel is
read off (the numbers that decide occupancy on a real GPU):

    compile_ptx(cu_path, out_dir, arch)   nvcc -ptx: the .cu as PTX for one architecture
    ptxas_resources(ptx_path, arch)       ptxas -v on any PTX (nvcc's or Numba's), parsed
    parse_ptxas_log(log, source)          the parser itself, also fed NVRTC's log
                                          (kernels/verify/nvrtc_check.py)
    resources(cu_path, arch)              both steps for one .cu
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The oldest architecture minirad supports (Turing: the T4 of Colab's free tier; CUDA 13 still
# compiles for it), and the newest it is checked on (Hopper: H100/H200). CI compiles for both:
# code that is valid for one architecture is not always valid, or as cheap, on another.
ARCH = "sm_75"
ARCHES = ("sm_75", "sm_90")
KERNELS_DIR = Path(__file__).resolve().parent.parent


def cuda_sources() -> list[Path]:
    """Every .cu file of the op folders, sorted."""
    return sorted(KERNELS_DIR.glob("*/*.cu"))


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


def ptxas_path() -> str | None:
    return shutil.which("ptxas")


def compile_ptx(cu_path: Path, out_dir: Path, arch: str = ARCH) -> Path:
    """nvcc -ptx; raises RuntimeError with nvcc's message on failure."""
    ptx = out_dir / f"{cu_path.stem}.{arch}.ptx"
    command = ["nvcc", "-ptx", f"-arch={arch}", str(cu_path), "-o", str(ptx)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cu_path.name}: nvcc -ptx failed:\n{result.stderr[-4000:]}")
    return ptx


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reports for one kernel compiled for one architecture."""

    source: str  # the .cu file (or the Numba kernel) it came from
    kernel: str
    arch: str
    registers: int  # per thread
    shared_bytes: int  # static __shared__ memory per block
    spill_store_bytes: int  # registers that did not fit, written to local memory...
    spill_load_bytes: int  # ...and read back: both slow, both should be 0
    barriers: int  # named hardware barriers used (every __syncthreads() is barrier 0)


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\w+)'")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas_log(log: str, source: str) -> list[KernelResources]:
    """The kernels of a `ptxas -v` log, sorted by name. For each entry function ptxas prints

        Compiling entry function 'NAME' for 'sm_XX'
        Function properties for NAME                                  (not always)
            0 bytes stack frame, S bytes spill stores, L bytes spill loads
        Used R registers[, used B barriers][, M bytes smem][, ... cmem[0]]

    (NVRTC's log, with --ptxas-options=-v, is the same text.)
    """
    found = []
    kernel = arch = None
    stores = loads = 0
    for line in log.splitlines():
        if match := _ENTRY.search(line):
            kernel, arch = match.groups()
            stores = loads = 0
        elif match := _SPILL.search(line):
            stores, loads = (int(g) for g in match.groups())
        elif (match := _USED.search(line)) and kernel and arch:
            registers, barriers, smem = match.groups()
            found.append(
                KernelResources(
                    source,
                    kernel,
                    arch,
                    registers=int(registers),
                    shared_bytes=int(smem or 0),
                    spill_store_bytes=stores,
                    spill_load_bytes=loads,
                    barriers=int(barriers or 0),
                )
            )
            kernel = None
    return sorted(found, key=lambda k: k.kernel)


def ptxas_resources(ptx_path: Path, arch: str = ARCH, source: str = "") -> list[KernelResources]:
    """ptxas -v on one PTX file, parsed; `source` names where the PTX came from."""
    with tempfile.TemporaryDirectory() as tmp:
        command = ["ptxas", "-v", f"-arch={arch}", str(ptx_path), "-o", str(Path(tmp) / "o.cubin")]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{source or ptx_path.name}: ptxas failed:\n{result.stderr[-4000:]}")
    return parse_ptxas_log(result.stderr, source or ptx_path.name)


def resources(cu_path: Path, arch: str = ARCH) -> list[KernelResources]:
    """Registers, static shared memory, spills and barriers of each kernel (ptxas -v)."""
    with tempfile.TemporaryDirectory() as tmp:
        ptx = compile_ptx(cu_path, Path(tmp), arch)
        return ptxas_resources(ptx, arch, cu_path.name)
