"""Linear layer in Numba CUDA; its tiled matmul is also the one the cells and the decoder use.

Shapes:  x (N, in)   w (out, in)   b (out,) or None   y, dy (N, out)

    y = x @ w.T + b        dx = dy @ w        dw = dy.T @ x        db = sum_n dy[n]

The kernels compute C = A @ B for 2-D arrays A (M, K), B (K, N). Numba indexes arrays through
their strides, so a transposed view (w.T) is passed as it is: no copy.

Versions:
    naive  one thread per C[m, n]: a loop over k reading A's row and B's column from global
           memory. Each input element is fetched from DRAM by every thread that needs it.
    tiled  a TILE x TILE block of threads owns a TILE x TILE block of C and walks k one tile at a
           time: every thread copies one element of A's tile and one of B's into shared memory,
           the block synchronises (the tiles are complete), each thread does TILE multiply-adds
           from shared memory, and the block synchronises again (nobody still reads the tiles
           when the next ones overwrite them). DRAM traffic drops by a factor of TILE.

Launch geometry (TILE, block sizes) comes from kernels/runtime/numba_cuda.py. The columns of C
run along grid.x, its rows along grid.y, which grid_2d caps at the 65,535 blocks CUDA allows
there: each block takes one row (tile) after another, gridDim.y apart.
"""

from __future__ import annotations

from minirad.kernels.runtime.numba_cuda import TILE, cuda, grid_1d, grid_2d, xp

numba_cuda = cuda()


@numba_cuda.jit(cache=True)
def _matmul_naive(A, B, C):
    n, m_first = numba_cuda.grid(2)  # x runs along the columns of C, y along its rows
    rows_apart = numba_cuda.gridDim.y * numba_cuda.blockDim.y  # rows beyond grid.y: loop
    if n < C.shape[1]:
        for m in range(m_first, C.shape[0], rows_apart):
            total = A.dtype.type(0)  # a zero of A's dtype: no float64 on a float32 GPU path
            for k in range(A.shape[1]):
                total += A[m, k] * B[k, n]
            C[m, n] = total


@numba_cuda.jit(cache=True)
def _matmul_tiled(A, B, C):
    A_tile = numba_cuda.shared.array((TILE, TILE), dtype=A.dtype)
    B_tile = numba_cuda.shared.array((TILE, TILE), dtype=B.dtype)
    tx, ty = numba_cuda.threadIdx.x, numba_cuda.threadIdx.y
    n = numba_cuda.blockIdx.x * TILE + tx
    M, K = A.shape
    N = B.shape[1]
    # Row tiles gridDim.y apart (grid.y is capped); the same trip count in every thread.
    for m0 in range(numba_cuda.blockIdx.y * TILE, M, numba_cuda.gridDim.y * TILE):
        m = m0 + ty
        total = A.dtype.type(0)
        for k0 in range(0, K, TILE):
            # One element of each tile per thread; zeros outside the matrices keep the inner
            # loop free of bounds checks.
            A_tile[ty, tx] = A[m, k0 + tx] if m < M and k0 + tx < K else A.dtype.type(0)
            B_tile[ty, tx] = B[k0 + ty, n] if k0 + ty < K and n < N else B.dtype.type(0)
            numba_cuda.syncthreads()  # tiles complete before anyone reads them
            for k in range(TILE):
                total += A_tile[ty, k] * B_tile[k, tx]
            numba_cuda.syncthreads()  # all reads done before the next tiles overwrite these
        if m < M and n < N:
            C[m, n] = total


@numba_cuda.jit(cache=True)
def _add_bias(y, b):
    i = numba_cuda.grid(1)
    if i < y.size:
        y[i // y.shape[1], i % y.shape[1]] += b[i % y.shape[1]]


@numba_cuda.jit(cache=True)
def _column_sums(dy, db):
    col = numba_cuda.grid(1)  # consecutive threads read consecutive columns of each row
    if col < dy.shape[1]:
        total = dy.dtype.type(0)
        for r in range(dy.shape[0]):
            total += dy[r, col]
        db[col] = total


KERNELS = {"naive": _matmul_naive, "tiled": _matmul_tiled}


def matmul(A, B, version: str = "tiled"):
    """C = A @ B on the device (or the simulator). A (M, K), B (K, N), views allowed."""
    M, N = A.shape[0], B.shape[1]
    C = xp().empty((M, N), dtype=A.dtype)
    grid, block = grid_2d(M, N)
    KERNELS[version][grid, block](A, B, C)
    return C


def column_sums(dy):
    db = xp().empty(dy.shape[1], dtype=dy.dtype)
    blocks, threads = grid_1d(dy.shape[1])
    _column_sums[blocks, threads](dy, db)
    return db


def add_bias(y, b) -> None:
    blocks, threads = grid_1d(y.size)
    _add_bias[blocks, threads](y, b)


def _contiguous(*arrays):
    """Strided views (every other column, say) cannot be copied to a device as one block;
    transposes of contiguous arrays can, so w.T and dy.T below stay views."""
    return [None if a is None else xp().ascontiguousarray(a) for a in arrays]


def _version(name: str) -> dict:
    def linear_forward(x, w, b):
        x, w, b = _contiguous(x, w, b)
        y = matmul(x, w.T, name)
        if b is not None:
            add_bias(y, b)
        return y

    def linear_backward(dy, x, w):
        dy, x, w = _contiguous(dy, x, w)
        return matmul(dy, w, name), matmul(dy.T, x, name), column_sums(dy)

    return {"linear_forward": linear_forward, "linear_backward": linear_backward}


VERSIONS = {"naive": _version("naive"), "tiled": _version("tiled")}
DEFAULT_VERSION = "tiled"
