"""Grid arithmetic for every launch, Numba CUDA and CUDA C alike (llm.c keeps it in common.h).

A kernel that runs one thread per item checks `i < n` and returns past the end, so the host
launches enough blocks to cover n items:

    ceil_div(n, d) = ceil(n / d)        in integers, for n >= 0 and d > 0
    grid_1d(n, threads)                 ceil_div(n, threads) blocks of `threads` threads
    grid_2d(rows, cols, tile)           tile x tile blocks over a rows x cols result, x along cols

A grid never has 0 blocks: CUDA refuses such a launch (and the launch validator,
launch_check.py, refuses it in the emulation too), so an empty dimension (a batch of 0, say)
still launches one block, whose threads all fail the bounds check and write nothing. A kernel
launched with exactly one block per item that does not check its block index (conv2d's
db_tiled) is instead not launched at all when there are no items.

Sizes are ints or tuples, as in CUDA C's kernel<<<blocks, threads>>> (an int is a 1-D size): Numba
takes either as it is, and a CUDA C launcher passes `dim3(size)`, its (x, y, z). The block sizes
themselves are each backend's own: kernels/runtime/numba_cuda.py for Numba CUDA (smaller under the
simulator), the THREADS and TILE of each cuda_c.py for CUDA C (they must equal the .cu's #defines).
"""

from __future__ import annotations

Size = int | tuple[int, ...]  # a grid or block size: an int (1-D) or up to three ints
Geometry = tuple[Size, Size]  # (grid, block) of one launch


def ceil_div(n: int, d: int) -> int:
    """ceil(n / d) for n >= 0 and d > 0, without floating point: the blocks that cover n items."""
    return (n + d - 1) // d


def grid_1d(n: int, threads: int) -> tuple[int, int]:
    """(blocks, threads) covering n items with one thread each; at least one block."""
    return max(1, ceil_div(n, threads)), threads


def grid_2d(rows: int, cols: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) covering a rows x cols result with tile x tile blocks; x runs along cols."""
    grid = (max(1, ceil_div(cols, tile)), max(1, ceil_div(rows, tile)))
    return grid, (tile, tile)


def dim3(size: Size | list[int]) -> tuple[int, int, int]:
    """A grid or block size as CUDA's dim3 (x, y, z): the missing dimensions are 1."""
    sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    if not 1 <= len(sizes) <= 3:
        raise ValueError(f"a grid or block has 1 to 3 dimensions, got {size!r}")
    x, y, z = (*sizes, 1, 1)[:3]
    return int(x), int(y), int(z)
