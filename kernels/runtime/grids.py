"""Grid arithmetic for every launch, Numba CUDA and CUDA C alike (llm.c keeps it in common.h).

A kernel that runs one thread per item checks `i < n` and returns past the end, so the host
launches enough blocks to cover n items:

    ceil_div(n, d) = ceil(n / d)        in integers, for n >= 0 and d > 0
    grid_1d(n, threads)                 ceil_div(n, threads) blocks of `threads` threads
    grid_2d(rows, cols, tile)           tile x tile blocks over a rows x cols result, x along cols

grid.y holds at most 65,535 blocks (grid.x 2^31 - 1; launch_check.MAX_GRID), so grid_2d puts
the columns of a result on x and its rows on y capped at that limit: a kernel launched with it
takes one row tile after another, gridDim.y tiles apart (a grid-stride loop over y), and a
result of any number of rows is a legal launch.

A GPU is full when it has blocks for all its streaming multiprocessors (SMs) and then some, so
that one block can wait for memory while another computes. A long sum that only a few blocks
share (conv2d's dw: a K x CRS result summed over N*P*Q terms) is therefore cut into slices
that more blocks sum side by side, and a second pass adds the slices up:

    split_reduction(output_blocks, length, min_slice, granule)
                                        -> (slices, slice_length): enough slices that
                                           output_blocks * slices reaches FILL_BLOCKS, none
                                           shorter than min_slice terms

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

# The GPU a launch should fill: an H100 or H200 has 132 SMs, the most of the GPUs minirad
# targets. Two blocks per SM: while one waits for its tiles to arrive from memory, the other
# computes (the first pass of a split sum also shares the SM with nothing else).
GPU_SMS = 132
FILL_BLOCKS = 2 * GPU_SMS
# A slice of a split sum is at least this many steps of its block's loop (a step: one tile of
# TILE terms, or THREADS terms for a block-wide reduction): the slice's fixed costs (starting
# the block, writing its partial result, the second pass reading it back) are about one step,
# so they stay within an eighth of its work.
MIN_SLICE_STEPS = 8
# CUDA C kernels index with 32-bit `int`. An index must stay below 2^31 even after one more step
# of a loop (a thread's last i + THREADS, a block's last row tile + gridDim.y * TILE), so
# arrays are kept this far below it.
INT_INDEX_SLACK = 2**24
MAX_INT_INDEXED = 2**31 - 1 - INT_INDEX_SLACK


def ceil_div(n: int, d: int) -> int:
    """ceil(n / d) for n >= 0 and d > 0, without floating point: the blocks that cover n items."""
    return (n + d - 1) // d


def grid_1d(n: int, threads: int) -> tuple[int, int]:
    """(blocks, threads) covering n items with one thread each; at least one block."""
    return max(1, ceil_div(n, threads)), threads


def grid_2d(rows: int, cols: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of tile x tile blocks over a rows x cols result; x runs along cols.

    grid.y is capped at the 65,535 blocks a grid may have in y: a kernel launched with this
    grid loops over its row tiles, `for row0 = blockIdx.y * tile; row0 < rows; row0 +=
    gridDim.y * tile` (a grid-stride loop), so beyond the cap each block takes several.
    """
    # Imported here: launch_check imports this module for Size and dim3.
    from minirad.kernels.runtime.launch_check import MAX_GRID

    row_blocks = min(max(1, ceil_div(rows, tile)), MAX_GRID[1])
    return (max(1, ceil_div(cols, tile)), row_blocks), (tile, tile)


def split_reduction(
    output_blocks: int, length: int, min_slice: int, granule: int = 1
) -> tuple[int, int]:
    """(slices, slice_length): how to cut a sum of `length` terms across more blocks.

    The result's own grid has output_blocks blocks, each summing all `length` terms. Cut into
    slices of slice_length terms (a multiple of `granule`, at least min_slice unless the whole
    sum is shorter), with one block per (output block, slice), the launch has
    output_blocks * slices blocks: at least FILL_BLOCKS where the sum is long enough, and one
    slice (no split, no second pass) where the output fills the GPU alone.
    """
    wanted = ceil_div(FILL_BLOCKS, max(1, output_blocks))
    most = max(1, length // max(1, min_slice))  # no slice shorter than min_slice
    slice_length = ceil_div(ceil_div(length, min(wanted, most)), granule) * granule
    slice_length = max(granule, slice_length)  # an empty sum (length 0): one empty slice
    return max(1, ceil_div(length, slice_length)), slice_length


def check_int_indices(source: str, **sizes: int) -> None:
    """Refuse, before anything is allocated, sizes that `source`'s 32-bit int indices cannot
    reach: ValueError naming the array, its size and the limit (MAX_INT_INDEXED).

    sizes: array name -> its number of elements (or any index range the kernels walk).
    """
    for name, size in sizes.items():
        if size > MAX_INT_INDEXED:
            raise ValueError(
                f"{name}: {size} elements, more than the {MAX_INT_INDEXED} that {source}'s "
                "int indices reach"
            )


def dim3(size: Size | list[int]) -> tuple[int, int, int]:
    """A grid or block size as CUDA's dim3 (x, y, z): the missing dimensions are 1."""
    sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    if not 1 <= len(sizes) <= 3:
        raise ValueError(f"a grid or block has 1 to 3 dimensions, got {size!r}")
    x, y, z = (*sizes, 1, 1)[:3]
    return int(x), int(y), int(z)
