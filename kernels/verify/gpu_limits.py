"""Does every compiled kernel fit a real GPU at the block size it is launched with?

The launch validator (runtime/launch_check.py) checks what a launch asks for; this checks what the
compiler made of each kernel, from ptxas's report (runtime/nvcc.py), for every architecture:

    spills          0 bytes of spill stores and loads: a spill is a value that did not fit in
                    the registers and went to local memory, which lives in DRAM (slow)
    shared memory   static __shared__ bytes within the 48 KiB a block has without opt-in
                    (launch_check.MAX_SHARED_BYTES_PER_BLOCK)
    registers       registers/thread x threads/block within REGISTER_FILE, counted as the
                    hardware allocates them (per warp, in units of 256): a block that needs more
                    cannot launch ("too many resources requested for launch")

The block sizes are the real ones: `record_cuda_c_blocks()` runs every CUDA C op once in the
g++ emulation (whose host code is the GPU's, cuda_c.py, with the GPU's THREADS and TILE) and
records each kernel's largest block. The Numba CUDA kernels are checked the same way by
kernels/verify/ptx_check.py.

    python -m minirad.kernels.verify.gpu_limits     one line per .cu kernel and architecture
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator

from minirad.kernels.runtime.grids import ceil_div, dim3
from minirad.kernels.runtime.launch_check import MAX_SHARED_BYTES_PER_BLOCK
from minirad.kernels.runtime.nvcc import ARCHES, KernelResources, cuda_sources, resources

# CUDA C++ Programming Guide, "Technical Specifications per Compute Capability": 64K 32-bit
# registers per SM, and at most as many per block, for compute capabilities 7.5 to 9.0.
REGISTER_FILE = 64 * 1024
WARP_SIZE = 32
REGISTER_ALLOCATION_UNIT = 256  # registers are given to a warp in multiples of 256


def registers_per_block(registers_per_thread: int, threads_per_block: int) -> int:
    """Registers a block occupies: each warp's share rounded up to the allocation unit."""
    per_warp = REGISTER_ALLOCATION_UNIT * ceil_div(
        registers_per_thread * WARP_SIZE, REGISTER_ALLOCATION_UNIT
    )
    return ceil_div(threads_per_block, WARP_SIZE) * per_warp


def limit_problems(k: KernelResources, threads_per_block: int) -> list[str]:
    """Why kernel k would spill or fail to launch with blocks of this size ([] if it fits)."""
    where = f"{k.source} {k.kernel} ({k.arch}, {threads_per_block} threads/block)"
    problems = []
    if k.spill_store_bytes or k.spill_load_bytes:
        problems.append(
            f"{where}: spills {k.spill_store_bytes} bytes stored, {k.spill_load_bytes} loaded"
        )
    if k.shared_bytes > MAX_SHARED_BYTES_PER_BLOCK:
        problems.append(
            f"{where}: {k.shared_bytes} bytes of static shared memory, more than "
            f"{MAX_SHARED_BYTES_PER_BLOCK}"
        )
    needed = registers_per_block(k.registers, threads_per_block)
    if needed > REGISTER_FILE:
        problems.append(
            f"{where}: {k.registers} registers/thread need {needed} registers per block, "
            f"more than the {REGISTER_FILE} of the register file"
        )
    return problems


def record_cuda_c_blocks() -> dict[str, int]:
    """{kernel: its largest block, in threads} over one call of every op of the CUDA C code."""
    from minirad.kernels.runtime import cuda_c_cpu
    from minirad.kernels.verify.smoke import exercise_every_op

    blocks: dict[str, int] = {}
    launch = cuda_c_cpu.EmulatedModule.launch

    def recording_launch(self, name, grid, block, args):
        blocks[name] = max(blocks.get(name, 0), math.prod(dim3(block)))
        return launch(self, name, grid, block, args)

    cuda_c_cpu.EmulatedModule.launch = recording_launch  # type: ignore[method-assign]
    try:
        exercise_every_op("cuda_c_cpu")
    finally:
        cuda_c_cpu.EmulatedModule.launch = launch  # type: ignore[method-assign]
    return blocks


def cuda_c_resources(arches=ARCHES) -> Iterator[KernelResources]:
    """ptxas's report of every kernel of every .cu, for each architecture."""
    for source in cuda_sources():
        for arch in arches:
            yield from resources(source, arch)


def main() -> int:
    blocks = record_cuda_c_blocks()
    failures = 0
    for k in cuda_c_resources():
        threads = blocks.get(k.kernel)
        problems = (
            limit_problems(k, threads)
            if threads
            else [f"{k.kernel}: never launched, block size unknown"]
        )
        failures += bool(problems)
        status = "; ".join(problems) or "ok"
        print(f"{k.source:13} {k.kernel:34} {k.arch} {k.registers:3d} regs x {threads} {status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
