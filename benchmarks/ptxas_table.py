"""Registers and shared memory of every CUDA C kernel, from `ptxas -v` (no GPU needed).

    python benchmarks/ptxas_table.py        # writes benchmarks/PTXAS.md and prints it

Registers per thread and static shared memory per block decide how many blocks fit on one
streaming multiprocessor (occupancy): on sm_75, 64K registers and 64 KB of shared memory per SM.
"""

from __future__ import annotations

import sys
from pathlib import Path

from minirad.kernels.runtime.nvcc import ARCH, cuda_sources, nvcc_path, resources

OUT = Path(__file__).resolve().parent / "PTXAS.md"


def main() -> int:
    if nvcc_path() is None:
        print("ptxas_table: nvcc not found; install the CUDA toolkit", file=sys.stderr)
        return 1
    lines = [
        f"# CUDA C kernels: resources reported by `ptxas -v -arch={ARCH}`",
        "",
        "Command: `python benchmarks/ptxas_table.py`",
        "",
        "| source | kernel | registers / thread | static shared memory / block (bytes) "
        "| spill stores (bytes) | named barriers used |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for source in cuda_sources():
        for k in resources(source):
            lines.append(
                f"| {k.source} | {k.kernel} | {k.registers} | {k.shared_bytes} | "
                f"{k.spill_bytes} | {k.barriers} |"
            )
    lines += [
        "",
        "Named barriers used: how many of the 16 named hardware barriers (PTX `bar.sync 0..15`)",
        "a kernel uses (ptxas's 'used N barriers'). Every `__syncthreads()` is barrier 0, so a",
        "kernel with several `__syncthreads()` reports 1: not a count of synchronisation points.",
    ]
    text = "\n".join(lines) + "\n"
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
