"""How full each kernel launch of one training step keeps a GPU: blocks per launch, tabulated.

    python benchmarks/occupancy.py [--out benchmarks/OCCUPANCY.md]

A GPU runs a grid's blocks on its streaming multiprocessors (SMs), several blocks per SM at a
time; a launch of fewer blocks than the GPU has SMs leaves SMs idle for its whole duration,
however long each block works. The H100 and H200 have 132 SMs. This script records every CUDA C
launch of one training step of the bundled report model, at its shapes and the trainer's batch
size, without running a kernel (minirad/models/report_launches.py, through the launch recorder
kernels/runtime/launch_record.py; no GPU needed), and prints one row per distinct launch:
kernel, grid, block, blocks, threads per block, and how many times the step launches it. Rows
under SMS blocks are marked; tests/test_geometry.py allows only the ones it explains.

Writes OCCUPANCY.md (default benchmarks/OCCUPANCY.md); its hand-written last section, from
KEPT_SECTION on (the table as it was before the weight-gradient reductions were split across
blocks), is kept as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minirad.kernels.runtime.launch_record import Launch, distinct
from minirad.models.report_launches import training_step_launches

SMS = 132  # streaming multiprocessors of an H100 / H200: the blocks a launch needs to fill one
KEPT_SECTION = "## Before"
HEADER = ("kernel", "grid", "block", "blocks", "threads/block", "count")


def rows(launches: list[Launch]) -> list[tuple[str, ...]]:
    """One table row per distinct launch, by kernel name then by blocks, largest first."""
    counted = sorted(distinct(launches), key=lambda lc: (lc[0].kernel, -lc[0].blocks))
    return [
        (
            launch.kernel,
            "x".join(map(str, launch.grid)),
            "x".join(map(str, launch.block)),
            f"{launch.blocks}{'' if launch.blocks >= SMS else ' (<)'}",
            str(launch.threads_per_block),
            str(count),
        )
        for launch, count in counted
    ]


def markdown_table(table: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return lines + ["| " + " | ".join(row) + " |" for row in table]


def kept_section(path: Path) -> list[str]:
    """The lines of `path` from KEPT_SECTION on (none if the file or the heading is missing)."""
    text = path.read_text() if path.exists() else ""
    start = text.find(KEPT_SECTION)
    return [] if start < 0 else ["", *text[start:].rstrip("\n").split("\n")]


def report(launches: list[Launch], kept: list[str]) -> str:
    under = sum(1 for launch in launches if launch.blocks < SMS)
    lines = [
        "# Occupancy: the blocks of every launch of one training step",
        "",
        "Command: `python benchmarks/occupancy.py`  ",
        "One training step of the bundled report model (minirad/weights/default.npz) at the",
        "trainer's batch size, every CUDA C launch recorded and validated, none run",
        "(minirad/models/report_launches.py). `(<)`: fewer blocks than the 132 SMs of an",
        "H100/H200; tests/test_geometry.py says why each such kernel is allowed.",
        "",
        f"{len(launches)} launches, {len(distinct(launches))} distinct; {under} under {SMS} "
        "blocks.",
        "",
        *markdown_table(rows(launches)),
        *kept,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("OCCUPANCY.md"))
    args = parser.parse_args()
    text = report(training_step_launches(), kept_section(args.out))
    print(text, end="")
    args.out.write_text(text)


if __name__ == "__main__":
    main()
