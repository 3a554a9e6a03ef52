"""Compile the CUDA C sources with the real toolchain: `nvcc -ptx`, then `ptxas -v`.

No GPU is needed to compile, so this is how CI proves that every .cu is valid CUDA for the
lowest architecture we support (sm_75), and how the register and shared-memory use of every
kernel is read off (the numbers that decide occupancy on a real GPU).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ARCH = "sm_75"
KERNELS_DIR = Path(__file__).resolve().parent.parent


def cuda_sources() -> list[Path]:
    """Every .cu file of the op folders, sorted."""
    return sorted(KERNELS_DIR.glob("*/*.cu"))


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


def compile_ptx(cu_path: Path, out_dir: Path, arch: str = ARCH) -> Path:
    """nvcc -ptx; raises RuntimeError with nvcc's message on failure."""
    ptx = out_dir / f"{cu_path.stem}.ptx"
    command = ["nvcc", "-ptx", f"-arch={arch}", str(cu_path), "-o", str(ptx)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cu_path.name}: nvcc -ptx failed:\n{result.stderr[-4000:]}")
    return ptx


@dataclass(frozen=True)
class KernelResources:
    source: str
    kernel: str
    registers: int
    shared_bytes: int
    spill_bytes: int
    barriers: int


_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_SPILL = re.compile(r"(\d+) bytes spill stores")
_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def resources(cu_path: Path, arch: str = ARCH) -> list[KernelResources]:
    """Registers, static shared memory, spills and barriers of each kernel (ptxas -v)."""
    with tempfile.TemporaryDirectory() as tmp:
        ptx = compile_ptx(cu_path, Path(tmp), arch)
        command = ["ptxas", "-v", f"-arch={arch}", str(ptx), "-o", str(Path(tmp) / "out.cubin")]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cu_path.name}: ptxas failed:\n{result.stderr[-4000:]}")
    found, kernel, spill = [], None, 0
    for line in result.stderr.splitlines():
        if match := _ENTRY.search(line):
            kernel, spill = match.group(1), 0
        elif match := _SPILL.search(line):
            spill = int(match.group(1))
        elif (match := _USED.search(line)) and kernel:
            registers, barriers, smem = match.groups()
            found.append(
                KernelResources(
                    cu_path.name, kernel, int(registers), int(smem or 0), spill, int(barriers or 0)
                )
            )
            kernel = None
    return sorted(found, key=lambda k: k.kernel)
