"""2-D convolution (cross-correlation, as in every deep-learning library), Numba CUDA backend.

Shapes:  x (N, C, H, W)   w (K, C, R, S)   b (K,) or None   y and dy (N, K, P, Q)
         stride (sh, sw), padding (ph, pw); x_pad is x with ph zero rows and pw zero columns
         added on each side;  P = (H + 2ph - R) // sh + 1,  Q = (W + 2pw - S) // sw + 1.
         x_pad is never built: a read that falls in the border returns 0 (`x_padded`).

Forward:
    y[n, k, p, q] = b[k] + sum_{c, r, s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]
Backward, given dy = dL/dy:
    db[k]          = sum_{n, p, q} dy[n, k, p, q]
    dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x_pad[n, c, p*sh + r, q*sw + s]
    dx[n, c, h, w] = sum_{k, r, s} dy[n, k, p, q] * w[k, c, r, s], over the (r, s) for which
                     some output (p, q) put window offset (r, s) on pixel (h, w):
                     h + ph = p*sh + r and w + pw = q*sw + s, 0 <= p < P, 0 <= q < Q.

Versions:
    naive  one thread per output element, the sum as written, every operand read from global
           memory: y[n,k,p,q]; dx[n,c,h,w] gathers from dy (each thread writes its own element
           only, so no atomics are needed); dw[k,c,r,s] sums over n, p, q; db[k] one thread per
           channel.
    tiled  the default. The three sums are matrix products, the reference's im2col view:
               forward  Y[k, npq]  = sum_crs W[k, crs]  * X_col[crs, npq]
               dw       dW[k, crs] = sum_npq dY[k, npq] * X_col[crs, npq]
               dx       dX[c, nhw] = sum_krs W[k, crs]  * dY_col[krs, nhw]
           (npq = the flat index of (n, p, q), crs of (c, r, s), ...), with the columns
               X_col[crs, npq]  = x_pad[n, c, p*sh + r, q*sw + s]
               dY_col[krs, nhw] = dy[n, k, p, q] for the (p, q) that met pixel (h, w) with
                                  offset (r, s), 0 where no output did.
           Each product runs like linear's tiled matmul: a TILE x TILE block of threads owns a
           TILE x TILE block of the result and walks the sum one TILE-slice at a time, both
           operand tiles staged in shared memory. The column matrices are never stored
           ("implicit GEMM", as in cuDNN): each thread fetches its one element of the tile
           straight from x or dy. Every weight loaded is used by TILE output pixels, every
           input pixel by TILE output channels.
           Why not the classic "input tile with halo"? A block of TILE x TILE outputs reads
           (TILE-1)*sh + R input rows: a size known only at run time, and shared arrays need
           a compile-time size. The column view gives TILE x TILE tiles for every window and
           stride. For dx with stride 1, dY_col is the im2col of dy padded by R-1-ph rows and
           S-1-pw columns, with the window flipped: dx is the convolution of dy with the
           flipped kernel, channels swapped. With stride > 1 most entries of dY_col are the
           zeros between strided outputs, multiplied for nothing (sh*sw times the work), but
           the result is right. db: one block per channel, each thread sums a strided share,
           then the block adds the partial sums pairwise in shared memory (a tree, log2 steps).
           dw and db split their long sum over npq across blocks: dW is small (K x CRS, 8 x 9
           in a first layer) and npq long (N*P*Q, 524,288 for 32 images of 128 x 128), so one
           block per tile of dW would leave all but a few SMs idle. The sum is cut into
           `slices` slices (grid.z for dw, grid.y for db), each block writes the partial sum of
           its slice, and `_sum_slices` adds the slices of each element in order z = 0, 1, ...
           Two passes rather than atomic adds into a zeroed dw: atomics from different blocks
           land in a different order on every run, and float addition is not associative, so
           the fixed order is what makes dw the same bits every run. The slice count comes from
           the work size (grids.split_reduction); with one slice the tile goes straight to dw.

Launch geometry (TILE, THREADS_1D, grid_1d, grid_2d) comes from kernels/runtime/numba_cuda.py.
The tiled kernels put the rows of their result (channels) on grid.y, which grid_2d caps at
the 65,535 blocks CUDA allows there: each block loops over row tiles gridDim.y apart.
The kernels index 4-D arrays (Numba reads them through their strides), so the flat indices of
the column matrices are unravelled into (n, c, h, w)-style indices with `unravel3`.
"""

from __future__ import annotations

from minirad.kernels._check import Pair, conv2d_output_size
from minirad.kernels.runtime.grids import MIN_SLICE_STEPS, split_reduction
from minirad.kernels.runtime.numba_cuda import THREADS_1D, TILE, cuda, grid_1d, grid_2d, xp

numba_cuda = cuda()

# The tree reduction of db halves the active threads at every step.
assert THREADS_1D & (THREADS_1D - 1) == 0, "THREADS_1D must be a power of two"


# ----------------------------------------------------------------------------------------------
# Device functions shared by the versions: index arithmetic and the two gathers
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(device=True)
def unravel3(i, B, C):
    """(a, b, c) such that i = (a*B + b)*C + c: a flat index into an (A, B, C) array."""
    return i // (B * C), i // C % B, i % C


@numba_cuda.jit(device=True)
def x_padded(x, n, c, h_pad, w_pad, ph, pw):
    """x_pad[n, c, h_pad, w_pad]: an element of x, or 0 in the padding border."""
    h, w = h_pad - ph, w_pad - pw
    if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]:
        return x[n, c, h, w]
    return x.dtype.type(0)


@numba_cuda.jit(device=True)
def dy_reaching(dy, n, k, h, w, r, s, sh, sw, ph, pw):
    """dy[n, k, p, q] of the output (p, q) whose window put offset (r, s) on pixel (h, w) of x.

    0 if there is none. Pixel (h, w) lies at (h + ph, w + pw) in x_pad, and the window of
    output (p, q) covers x_pad[p*sh + r, q*sw + s]: so p*sh = h + ph - r must be a multiple of
    sh with 0 <= p < P (the same for q along the width).
    """
    p_sh, q_sw = h + ph - r, w + pw - s
    if p_sh < 0 or q_sw < 0 or p_sh % sh != 0 or q_sw % sw != 0:
        return dy.dtype.type(0)
    p, q = p_sh // sh, q_sw // sw
    if p < dy.shape[2] and q < dy.shape[3]:
        return dy[n, k, p, q]
    return dy.dtype.type(0)


# ----------------------------------------------------------------------------------------------
# Version "naive": one thread per output element
# ----------------------------------------------------------------------------------------------


@numba_cuda.jit(cache=True)
def _forward_naive(x, w, b, y, sh, sw, ph, pw):
    i = numba_cuda.grid(1)
    if i < y.size:
        N, K, P, Q = y.shape
        C, R, S = w.shape[1], w.shape[2], w.shape[3]
        nk, p, q = unravel3(i, P, Q)
        n, k = nk // K, nk % K
        total = b[k]
        for c in range(C):
            for r in range(R):
                for s in range(S):
                    total += x_padded(x, n, c, p * sh + r, q * sw + s, ph, pw) * w[k, c, r, s]
        y[n, k, p, q] = total


@numba_cuda.jit(cache=True)
def _dx_naive(dy, w, dx, sh, sw, ph, pw):
    # Gather, not scatter: thread (n, c, h, w) collects every dy that pixel fed, so no two
    # threads write the same dx element.
    i = numba_cuda.grid(1)
    if i < dx.size:
        N, C, H, W = dx.shape
        K, R, S = w.shape[0], w.shape[2], w.shape[3]
        nc, h, v = unravel3(i, H, W)  # v: the pixel's column (w is the weight)
        n, c = nc // C, nc % C
        total = dx.dtype.type(0)
        for k in range(K):
            for r in range(R):
                for s in range(S):
                    total += dy_reaching(dy, n, k, h, v, r, s, sh, sw, ph, pw) * w[k, c, r, s]
        dx[n, c, h, v] = total


@numba_cuda.jit(cache=True)
def _dw_naive(dy, x, dw, sh, sw, ph, pw):
    i = numba_cuda.grid(1)
    if i < dw.size:
        K, C, R, S = dw.shape
        N, P, Q = dy.shape[0], dy.shape[2], dy.shape[3]
        kc, r, s = unravel3(i, R, S)
        k, c = kc // C, kc % C
        total = dw.dtype.type(0)
        for n in range(N):
            for p in range(P):
                for q in range(Q):
                    total += dy[n, k, p, q] * x_padded(x, n, c, p * sh + r, q * sw + s, ph, pw)
        dw[k, c, r, s] = total


@numba_cuda.jit(cache=True)
def _db_naive(dy, db):
    k = numba_cuda.grid(1)
    if k < db.size:
        total = db.dtype.type(0)
        for n in range(dy.shape[0]):
            for p in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    total += dy[n, k, p, q]
        db[k] = total


# ----------------------------------------------------------------------------------------------
# Version "tiled": the three products as tiled matmuls over implicit column matrices
# ----------------------------------------------------------------------------------------------
# In every tiled kernel the block's threads form a TILE x TILE square: tx = threadIdx.x runs
# along the columns of the result, ty = threadIdx.y along its rows. In each step of the sum,
# thread (ty, tx) loads a_tile[ty, tx] = A[row, i0 + tx] and b_tile[ty, tx] = B[i0 + ty, col],
# outside the matrices a 0, so the multiply-adds below need no bounds checks. The loops have
# the same trip count in every thread: no thread may skip a syncthreads().


@numba_cuda.jit(cache=True)
def _forward_tiled(x, w, b, y, sh, sw, ph, pw):
    """Y[k, npq] = sum_crs W[k, crs] * X_col[crs, npq]."""
    w_tile = numba_cuda.shared.array((TILE, TILE), dtype=w.dtype)  # W[k, crs slice]
    x_tile = numba_cuda.shared.array((TILE, TILE), dtype=x.dtype)  # X_col[crs slice, npq]
    tx, ty = numba_cuda.threadIdx.x, numba_cuda.threadIdx.y
    npq = numba_cuda.blockIdx.x * TILE + tx  # this thread's column of Y
    N, K, P, Q = y.shape
    C, R, S = w.shape[1], w.shape[2], w.shape[3]
    CRS, NPQ = C * R * S, N * P * Q
    zero = y.dtype.type(0)
    for k0 in range(numba_cuda.blockIdx.y * TILE, K, numba_cuda.gridDim.y * TILE):  # row tiles
        k = k0 + ty  # this thread's row of Y
        total = zero
        for i0 in range(0, CRS, TILE):
            w_tile[ty, tx] = zero
            if k < K and i0 + tx < CRS:
                c, r, s = unravel3(i0 + tx, R, S)
                w_tile[ty, tx] = w[k, c, r, s]
            x_tile[ty, tx] = zero
            if i0 + ty < CRS and npq < NPQ:
                c, r, s = unravel3(i0 + ty, R, S)
                n, p, q = unravel3(npq, P, Q)
                x_tile[ty, tx] = x_padded(x, n, c, p * sh + r, q * sw + s, ph, pw)
            numba_cuda.syncthreads()  # tiles complete before anyone reads them
            for i in range(TILE):
                total += w_tile[ty, i] * x_tile[i, tx]
            numba_cuda.syncthreads()  # all reads done before the next tiles overwrite these
        if k < K and npq < NPQ:
            n, p, q = unravel3(npq, P, Q)
            y[n, k, p, q] = total + b[k]


@numba_cuda.jit(cache=True)
def _dx_tiled(dy, w, dx, sh, sw, ph, pw):
    """dX[c, nhw] = sum_krs W[k, crs] * dY_col[krs, nhw]."""
    w_tile = numba_cuda.shared.array((TILE, TILE), dtype=w.dtype)  # W[krs slice, c], transposed
    dy_tile = numba_cuda.shared.array((TILE, TILE), dtype=dy.dtype)  # dY_col[krs slice, nhw]
    tx, ty = numba_cuda.threadIdx.x, numba_cuda.threadIdx.y
    nhw = numba_cuda.blockIdx.x * TILE + tx  # this thread's column of dX
    N, C, H, W = dx.shape
    K, R, S = w.shape[0], w.shape[2], w.shape[3]
    KRS, NHW = K * R * S, N * H * W
    zero = dx.dtype.type(0)
    for c0 in range(numba_cuda.blockIdx.y * TILE, C, numba_cuda.gridDim.y * TILE):  # row tiles
        c = c0 + ty  # this thread's row of dX
        total = zero
        for i0 in range(0, KRS, TILE):
            w_tile[ty, tx] = zero
            if c < C and i0 + tx < KRS:
                k, r, s = unravel3(i0 + tx, R, S)
                w_tile[ty, tx] = w[k, c, r, s]
            dy_tile[ty, tx] = zero
            if i0 + ty < KRS and nhw < NHW:
                k, r, s = unravel3(i0 + ty, R, S)
                n, h, v = unravel3(nhw, H, W)
                dy_tile[ty, tx] = dy_reaching(dy, n, k, h, v, r, s, sh, sw, ph, pw)
            numba_cuda.syncthreads()
            for i in range(TILE):
                total += w_tile[ty, i] * dy_tile[i, tx]
            numba_cuda.syncthreads()
        if c < C and nhw < NHW:
            n, h, v = unravel3(nhw, H, W)
            dx[n, c, h, v] = total


@numba_cuda.jit(device=True)
def slice_end(z, slice_length, NPQ):
    """The end of slice z, [z * slice_length, end), of a sum of NPQ terms cut into slices."""
    first = z * slice_length
    return NPQ if NPQ - first <= slice_length else first + slice_length


@numba_cuda.jit(cache=True)
def _dw_tiled(dy, x, by_slice, slice_length, sh, sw, ph, pw):
    """by_slice[z, k, c, r, s] = sum over npq in slice z of dY[k, npq] * X_col[crs, npq].

    grid.z is the slice; by_slice is (slices, K, C, R, S): with one slice, a view of dw.
    """
    dy_tile = numba_cuda.shared.array((TILE, TILE), dtype=dy.dtype)  # dY[k, npq slice]
    x_tile = numba_cuda.shared.array((TILE, TILE), dtype=x.dtype)  # X_col[crs, npq slice].T
    tx, ty = numba_cuda.threadIdx.x, numba_cuda.threadIdx.y
    crs = numba_cuda.blockIdx.x * TILE + tx  # this thread's column of dW
    z = numba_cuda.blockIdx.z
    K, C, R, S = by_slice.shape[1], by_slice.shape[2], by_slice.shape[3], by_slice.shape[4]
    N, P, Q = dy.shape[0], dy.shape[2], dy.shape[3]
    CRS, NPQ = C * R * S, N * P * Q
    first, end = z * slice_length, slice_end(z, slice_length, NPQ)
    zero = by_slice.dtype.type(0)
    for k0 in range(numba_cuda.blockIdx.y * TILE, K, numba_cuda.gridDim.y * TILE):  # row tiles
        k = k0 + ty  # this thread's row of dW
        total = zero
        for i0 in range(first, end, TILE):
            dy_tile[ty, tx] = zero
            if k < K and i0 + tx < end:
                n, p, q = unravel3(i0 + tx, P, Q)
                dy_tile[ty, tx] = dy[n, k, p, q]
            x_tile[ty, tx] = zero
            if i0 + ty < end and crs < CRS:
                n, p, q = unravel3(i0 + ty, P, Q)
                c, r, s = unravel3(crs, R, S)
                x_tile[ty, tx] = x_padded(x, n, c, p * sh + r, q * sw + s, ph, pw)
            numba_cuda.syncthreads()
            for i in range(TILE):
                total += dy_tile[ty, i] * x_tile[i, tx]
            numba_cuda.syncthreads()
        if k < K and crs < CRS:
            c, r, s = unravel3(crs, R, S)
            by_slice[z, k, c, r, s] = total


@numba_cuda.jit(cache=True)
def _db_tiled(dy, by_slice, slice_length):
    """by_slice[z, k] = the sum of dy over channel k and slice z of npq, by block (k, z):
    strided partial sums, then a tree of pairwise adds in shared memory."""
    sums = numba_cuda.shared.array(THREADS_1D, dtype=dy.dtype)
    k, z, t = numba_cuda.blockIdx.x, numba_cuda.blockIdx.y, numba_cuda.threadIdx.x
    N, K, P, Q = dy.shape
    total = dy.dtype.type(0)
    end = slice_end(z, slice_length, N * P * Q)
    for npq in range(z * slice_length + t, end, THREADS_1D):  # consecutive threads, pixels
        n, p, q = unravel3(npq, P, Q)
        total += dy[n, k, p, q]
    sums[t] = total
    numba_cuda.syncthreads()
    half = THREADS_1D // 2
    while half > 0:
        if t < half:
            sums[t] += sums[t + half]
        numba_cuda.syncthreads()  # this level's sums are written before the next level reads
        half //= 2
    if t == 0:
        by_slice[z, k] = sums[0]


@numba_cuda.jit(cache=True)
def _sum_slices(by_slice, out):
    """out[i] = sum_z by_slice[z, i], z = 0, 1, ... in this order: the same bits every run.

    The second pass of dw and db; by_slice (slices, n), out (n,), one thread per element.
    """
    i = numba_cuda.grid(1)
    if i < out.size:
        total = out.dtype.type(0)
        for z in range(by_slice.shape[0]):
            total += by_slice[z, i]
        out[i] = total


# ----------------------------------------------------------------------------------------------
# Host code: allocate, launch, return
# ----------------------------------------------------------------------------------------------


def _forward_arrays(x, w, b, stride: Pair, padding: Pair):
    """Contiguous inputs, the bias (zeros when None: no bias is a zero bias) and an empty y."""
    arrays = xp()
    x, w = arrays.ascontiguousarray(x), arrays.ascontiguousarray(w)
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    b = arrays.zeros(K, dtype=x.dtype) if b is None else arrays.ascontiguousarray(b)
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    return x, w, b, arrays.empty((N, K, P, Q), dtype=x.dtype)


def _backward_arrays(dy, x, w):
    arrays = xp()
    dy, x, w = (arrays.ascontiguousarray(a) for a in (dy, x, w))
    dx = arrays.empty(x.shape, dtype=x.dtype)
    dw = arrays.empty(w.shape, dtype=w.dtype)
    db = arrays.empty(w.shape[0], dtype=w.dtype)
    return dy, x, w, dx, dw, db


def conv2d_forward_naive(x, w, b, stride: Pair, padding: Pair):
    x, w, b, y = _forward_arrays(x, w, b, stride, padding)
    _forward_naive[grid_1d(y.size)](x, w, b, y, *stride, *padding)
    return y


def conv2d_backward_naive(dy, x, w, stride: Pair, padding: Pair):
    dy, x, w, dx, dw, db = _backward_arrays(dy, x, w)
    _dx_naive[grid_1d(dx.size)](dy, w, dx, *stride, *padding)
    _dw_naive[grid_1d(dw.size)](dy, x, dw, *stride, *padding)
    _db_naive[grid_1d(db.size)](dy, db)
    return dx, dw, db


def conv2d_forward_tiled(x, w, b, stride: Pair, padding: Pair):
    x, w, b, y = _forward_arrays(x, w, b, stride, padding)
    N, K, P, Q = y.shape
    _forward_tiled[grid_2d(K, N * P * Q)](x, w, b, y, *stride, *padding)
    return y


def conv2d_backward_tiled(dy, x, w, stride: Pair, padding: Pair):
    dy, x, w, dx, dw, db = _backward_arrays(dy, x, w)
    N, C, H, W = x.shape
    _dx_tiled[grid_2d(C, N * H * W)](dy, w, dx, *stride, *padding)
    _dw_by_slices(dy, x, dw, stride, padding)
    _db_by_slices(dy, db)
    return dx, dw, db


def _dw_by_slices(dy, x, dw, stride: Pair, padding: Pair) -> None:
    """dw by slices of its sum over npq: grid (CRS tiles, K tiles, slices), then the sum."""
    K, C, R, S = dw.shape
    N, _, P, Q = dy.shape
    (crs_tiles, k_tiles), block = grid_2d(K, C * R * S)
    slices, slice_length = split_reduction(
        crs_tiles * k_tiles, N * P * Q, MIN_SLICE_STEPS * TILE, granule=TILE
    )
    if slices == 1:  # dW fills the GPU alone: the tiles go straight into dw
        by_slice = dw.reshape(1, K, C, R, S)
    else:
        by_slice = xp().empty((slices, K, C, R, S), dtype=dw.dtype)
    _dw_tiled[(crs_tiles, k_tiles, slices), block](dy, x, by_slice, slice_length, *stride, *padding)
    if slices > 1:
        _sum_slices[grid_1d(dw.size)](by_slice.reshape(slices, dw.size), dw.reshape(dw.size))


def _db_by_slices(dy, db) -> None:
    """db by slices of its sum over npq: grid (K, slices), then the sum."""
    N, K, P, Q = dy.shape
    if K == 0:  # one block per output channel; with none, db is empty and nothing launches
        return
    slices, slice_length = split_reduction(K, N * P * Q, MIN_SLICE_STEPS * THREADS_1D)
    by_slice = db.reshape(1, K) if slices == 1 else xp().empty((slices, K), dtype=db.dtype)
    _db_tiled[(K, slices), THREADS_1D](dy, by_slice, slice_length)
    if slices > 1:
        _sum_slices[grid_1d(K)](by_slice, db)


VERSIONS = {
    "naive": {"conv2d_forward": conv2d_forward_naive, "conv2d_backward": conv2d_backward_naive},
    "tiled": {"conv2d_forward": conv2d_forward_tiled, "conv2d_backward": conv2d_backward_tiled},
}
DEFAULT_VERSION = "tiled"
