"""Registers, shared memory and spills of every CUDA C kernel, from `ptxas -v` (no GPU needed).

    python benchmarks/ptxas_table.py        # writes benchmarks/PTXAS.md and prints it

One row per kernel, for each architecture minirad targets (nvcc.ARCHES: sm_75 and sm_90).
Registers per thread and static shared memory per block decide how many blocks fit on one
streaming multiprocessor (occupancy): 64K registers and up to 64 KB (sm_75) or 228 KB (sm_90) of
shared memory per SM. The threads per block are those the host code launches each kernel with
(recorded in the g++ emulation), and "fits" is kernels/verify/gpu_limits.py's verdict: no spills,
static shared memory within 48 KiB, registers x threads within the register file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from minirad.kernels.runtime.nvcc import ARCHES, nvcc_path
from minirad.kernels.verify.gpu_limits import (
    cuda_c_resources,
    limit_problems,
    record_cuda_c_blocks,
    registers_per_block,
)

OUT = Path(__file__).resolve().parent / "PTXAS.md"


def table_lines() -> list[str]:
    """The markdown table: one row per (kernel, architecture)."""
    blocks = record_cuda_c_blocks()
    lines = [
        "| source | kernel | arch | threads / block | registers / thread | registers / block "
        "| static shared memory / block (bytes) | spill stores / loads (bytes) "
        "| named barriers used | fits |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    found = sorted(cuda_c_resources(), key=lambda k: (k.source, k.kernel, k.arch))
    for k in found:
        threads = blocks[k.kernel]
        fits = "yes" if not limit_problems(k, threads) else "**no**"
        lines.append(
            f"| {k.source} | {k.kernel} | {k.arch} | {threads} | {k.registers} | "
            f"{registers_per_block(k.registers, threads)} | {k.shared_bytes} | "
            f"{k.spill_store_bytes} / {k.spill_load_bytes} | {k.barriers} | {fits} |"
        )
    return lines


def main() -> int:
    if nvcc_path() is None:
        print("ptxas_table: nvcc not found; install the CUDA toolkit", file=sys.stderr)
        return 1
    lines = [
        f"# CUDA C kernels: resources reported by `ptxas -v` for {', '.join(ARCHES)}",
        "",
        "Command: `python benchmarks/ptxas_table.py`",
        "",
        *table_lines(),
        "",
        "Registers / block: as the hardware allocates them (per warp, in units of 256), out of",
        "the 65536 of one SM's register file. Named barriers used: how many of the 16 named",
        "hardware barriers (PTX `bar.sync 0..15`) a kernel uses (ptxas's 'used N barriers').",
        "Every `__syncthreads()` is barrier 0, so a kernel with several `__syncthreads()`",
        "reports 1: not a count of synchronisation points.",
    ]
    text = "\n".join(lines) + "\n"
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
