"""2-D convolution (cross-correlation, as in every deep-learning library), Numba CPU backend.

Shapes:  x (N, C, H, W)   w (K, C, R, S)   b (K,) or None   y and dy (N, K, P, Q)
         stride (sh, sw), padding (ph, pw); x_pad is x with ph zero rows and pw zero columns
         added on each side;  P = (H + 2ph - R) // sh + 1,  Q = (W + 2pw - S) // sw + 1.

Forward:
    y[n, k, p, q] = b[k] + sum_{c, r, s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]
Backward, given dy = dL/dy of shape (N, K, P, Q):
    db[k]          = sum_{n, p, q} dy[n, k, p, q]
    dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x_pad[n, c, p*sh + r, q*sw + s]
    dx_pad[n, c, p*sh + r, q*sw + s] += dy[n, k, p, q] * w[k, c, r, s]   (dx: dx_pad unpadded)

Versions:
    naive    the formulas above as compiled loops, one output (or one dy entry) at a time, the
             padding an `if` on the index; serial. The first step from formula to machine code.
    blocked  the default. The same sums, arranged for the vector units and both cores:
      1. Shifted rows. A task copies a band of input rows, zero-padded, into a flat buffer
         with row pitch Wp = W + 2pw. With stride 1, output (p, q) sits at flat position
         i = p*Wp + q, and the whole band's output is a sum of shifted copies of one vector:
             y_flat[k, i] = b[k] + sum_t w[k, t] * band[offset[t] + i],
             tap t = (c, r, s),   offset[t] = (c * band_height + r) * Wp + s.
         Each term is a long contiguous multiply-add that LLVM turns into 16-wide AVX-512
         FMAs (8-wide for float64). The S - 1 positions q >= Q at the end of each row are
         computed and dropped (3% for a 3x3 kernel on 64-wide rows).
      2. Register tiles. The forward pass over a run of the band takes 4 output channels x 8
         taps: each input vector loaded feeds 4 FMAs, and each accumulator vector loaded and
         stored carries 8 taps (4x4 measured 10% slower). The dw dot products take a 4x4 tile
         of 16 running sums that stay in registers.
      3. The backward reuses both loops. dx is a stride-1 correlation of dy, dilated by the
         stride (sh - 1 zero rows between its rows) and padded by R-1-ph and S-1-pw, with
         the kernel flipped and its channel axes swapped, w'[c, k, r, s] = w[k, c, R-1-r,
         S-1-s]: the forward code runs on it unchanged. dw[k, t] = sum_i dy_flat[k, i] *
         band[offset[t] + i] reads the same shifted vectors, as dot products. A stride above
         1 multiplies the dilation zeros too: sh*sw times the needed work in dx and dw, sw
         times in the forward. Stride 1 is the common case (Conv2d's default, and the shape
         tuned for here); one path for every stride is simpler to read and to test.
         With inf or NaN in the inputs, those zeros (and the dropped positions of point 1)
         meet them in dw and dx, so a gradient may hold NaN where the reference holds inf or
         a finite number. Finite inputs give the reference's sums up to rounding.
      4. Parallel tasks: (image, band of output rows). One worker per thread owns its band
         buffers, reused from task to task, and its own partial sums of dw and db, added up
         at the end, so no two threads ever write one address.

Why this algorithm (tuned against PyTorch CPU on a 3x3 convolution of a batch of 64x64 images;
the timings, and the machine they were measured on, are in benchmarks/RESULTS.md, "Measurements
behind the kernels' design"):
    * im2col + GEMM, the reference's method, took several times PyTorch's time: its column
      buffer is R*S times the input, paid in page faults, tall-thin GEMMs and col2im.
    * A direct loop vectorised along one output row, 4 output channels at a time, was still
      slower than PyTorch.
    * blocked, the shifted rows above, is faster than PyTorch there, forward and backward.
    The first call in a fresh environment compiles for seconds (forward + backward, per dtype);
    later processes load the machine code from Numba's cache (cache=True).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from minirad.kernels._check import Pair, conv2d_output_size
from minirad.kernels.runtime.grids import ceil_div

# LLVM may fuse a*b + c into one FMA and reorder a sum (so that a dot product vectorises), but
# assumes nothing about NaN or inf: a non-finite input still reaches the output.
FAST_MATH = {"contract", "reassoc"}

TILE = 4  # output channels per register tile; weights are padded with zero rows to a multiple
# Bytes of one accumulator row of a run: TILE such rows stay in the 48 KiB L1 data cache while
# the band streams past, and a run is long enough (~2000 floats) to amortise each loop's setup.
RUN_BYTES = 8192


# ----------------------------------------------------------------------------------------------
# Version "naive": the formulas, one element at a time
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _forward_naive(x, w, b, y, sh, sw, ph, pw):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    total = b[k]
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                h = p * sh + r - ph  # the row of x; outside [0, H) it is padding
                                j = q * sw + s - pw
                                if 0 <= h < H and 0 <= j < W:
                                    total += x[n, c, h, j] * w[k, c, r, s]
                    y[n, k, p, q] = total


@njit(cache=True)
def _backward_naive(dy, x, w, dx, dw, db, sh, sw, ph, pw):
    """dx, dw, db arrive zeroed; every entry of dy adds its share to all three."""
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = dy.shape[2], dy.shape[3]
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    g = dy[n, k, p, q]
                    db[k] += g
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                h = p * sh + r - ph
                                j = q * sw + s - pw
                                if 0 <= h < H and 0 <= j < W:  # padding has no gradient
                                    dw[k, c, r, s] += g * x[n, c, h, j]
                                    dx[n, c, h, j] += g * w[k, c, r, s]


def conv2d_forward_naive(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair
) -> np.ndarray:
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    b = np.zeros(K, dtype=x.dtype) if b is None else np.ascontiguousarray(b)
    y = np.empty((N, K, P, Q), dtype=x.dtype)
    _forward_naive(np.ascontiguousarray(x), np.ascontiguousarray(w), b, y, *stride, *padding)
    return y


def conv2d_backward_naive(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx = np.zeros(x.shape, dtype=x.dtype)
    dw = np.zeros(w.shape, dtype=w.dtype)
    db = np.zeros(w.shape[0], dtype=w.dtype)
    dy, x, w = np.ascontiguousarray(dy), np.ascontiguousarray(x), np.ascontiguousarray(w)
    _backward_naive(dy, x, w, dx, dw, db, *stride, *padding)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# Version "blocked": shifted rows of a zero-padded band, register tiles, parallel tasks
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _fill_band(src, band, first_row, top, left, dil_h, dil_w):
    """band[c, i, j] = src[c, (first_row + i - top) / dil_h, (j - left) / dil_w], else 0.

    src (C, H, W) is one image, band (C, band_height, pitch) the buffer a task reads. A band
    position takes a value where both quotients are whole numbers inside src, and is zero
    elsewhere: with dilation 1 that is the zero padding, with dilation sh it also puts sh - 1
    zero rows between the rows of a dilated dy.
    Callers pass ints as variables (np.int64(1), not 1): Numba compiles one more copy of a
    function for each literal constant it is called with.
    """
    C, H, W = src.shape
    band_height, pitch = band.shape[1], band.shape[2]
    # The source columns that land inside the band: 0 <= left + j * dil_w < pitch.
    j_lo = max(0, -(left // dil_w))
    j_hi = min(W, (pitch - 1 - left) // dil_w + 1)
    for c in range(C):
        for i in range(band_height):
            row = band[c, i]
            g = first_row + i - top
            h = g // dil_h
            if g % dil_h != 0 or not 0 <= h < H or j_lo >= j_hi:
                row[:] = 0  # a padding row, or a zero row of a dilated dy
                continue
            src_row = src[c, h, j_lo:j_hi]
            start = left + j_lo * dil_w
            stop = start + (src_row.size - 1) * dil_w + 1
            # Plain loops over 1-D views: measured 4x faster here than slice assignments or
            # than zeroing the whole row before the copy.
            for j in range(start):
                row[j] = 0
            for j in range(stop, pitch):
                row[j] = 0
            dst = row[start:]
            if dil_w == 1:  # the usual case: a contiguous copy, which LLVM vectorises
                for j in range(src_row.size):
                    dst[j] = src_row[j]
            else:  # dy dilated by the stride: zero columns between the values
                for j in range(stop - start):
                    dst[j] = 0
                for j in range(src_row.size):
                    dst[j * dil_w] = src_row[j]


@njit(cache=True)
def _tap_offsets(C, R, S, band_height, pitch):
    """offsets[t] of tap t = (c, r, s): the band read from there lines up with the output."""
    offsets = np.empty(C * R * S, dtype=np.int64)
    for c in range(C):
        for r in range(R):
            for s in range(S):
                offsets[(c * R + r) * S + s] = (c * band_height + r) * pitch + s
    return offsets


@njit(cache=True, fastmath=FAST_MATH)
def _shifted_multiply_add(acc, band, offsets, taps, k0, start, L):
    """acc[j, i] += sum_t taps[k0 + j, t] * band[start + offsets[t] + i]   for j < 4, i < L.

    A 4x8 register tile: a pass loads the input vectors of 8 taps once and updates 4 output
    channels, so each vector load feeds 4 FMAs and each accumulator load and store carries 8
    taps. (4x4 was 10% slower; 8 channels x 4 taps as fast, but it pads K to a multiple of 8.)
    The band is read through slices (x0[i], not band[o0 + i]): then Numba knows every index is
    non-negative and adds no wrap-around test, which would stop LLVM vectorising the loop.
    """
    T = offsets.shape[0]
    T8 = T - T % 8  # taps taken eight at a time; the rest one at a time
    a0, a1, a2, a3 = acc[0, :L], acc[1, :L], acc[2, :L], acc[3, :L]
    w0, w1, w2, w3 = taps[k0], taps[k0 + 1], taps[k0 + 2], taps[k0 + 3]
    for t in range(0, T8, 8):
        x0, x1 = band[start + offsets[t] :][:L], band[start + offsets[t + 1] :][:L]
        x2, x3 = band[start + offsets[t + 2] :][:L], band[start + offsets[t + 3] :][:L]
        x4, x5 = band[start + offsets[t + 4] :][:L], band[start + offsets[t + 5] :][:L]
        x6, x7 = band[start + offsets[t + 6] :][:L], band[start + offsets[t + 7] :][:L]
        # 32 weights, loop-invariant: held in registers (or one broadcast load) per FMA.
        w00, w01, w02, w03 = w0[t], w0[t + 1], w0[t + 2], w0[t + 3]
        w04, w05, w06, w07 = w0[t + 4], w0[t + 5], w0[t + 6], w0[t + 7]
        w10, w11, w12, w13 = w1[t], w1[t + 1], w1[t + 2], w1[t + 3]
        w14, w15, w16, w17 = w1[t + 4], w1[t + 5], w1[t + 6], w1[t + 7]
        w20, w21, w22, w23 = w2[t], w2[t + 1], w2[t + 2], w2[t + 3]
        w24, w25, w26, w27 = w2[t + 4], w2[t + 5], w2[t + 6], w2[t + 7]
        w30, w31, w32, w33 = w3[t], w3[t + 1], w3[t + 2], w3[t + 3]
        w34, w35, w36, w37 = w3[t + 4], w3[t + 5], w3[t + 6], w3[t + 7]
        for i in range(L):
            v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
            v4, v5, v6, v7 = x4[i], x5[i], x6[i], x7[i]
            a0[i] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
            a0[i] += w04 * v4 + w05 * v5 + w06 * v6 + w07 * v7
            a1[i] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
            a1[i] += w14 * v4 + w15 * v5 + w16 * v6 + w17 * v7
            a2[i] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
            a2[i] += w24 * v4 + w25 * v5 + w26 * v6 + w27 * v7
            a3[i] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3
            a3[i] += w34 * v4 + w35 * v5 + w36 * v6 + w37 * v7
    for t in range(T8, T):
        x0 = band[start + offsets[t] :][:L]
        w00, w10, w20, w30 = w0[t], w1[t], w2[t], w3[t]
        for i in range(L):
            v0 = x0[i]
            a0[i] += w00 * v0
            a1[i] += w10 * v0
            a2[i] += w20 * v0
            a3[i] += w30 * v0


@njit(cache=True)
def _add4(row, t, s0, s1, s2, s3):
    """row[t : t + 4] += (s0, s1, s2, s3), without allocating a temporary array."""
    row[t] += s0
    row[t + 1] += s1
    row[t + 2] += s2
    row[t + 3] += s3


@njit(cache=True, fastmath=FAST_MATH)
def _shifted_dot(grad, dy_band, band, offsets, L):
    """grad[k, t] += sum_{i < L} dy_band[k, i] * band[offsets[t] + i]   for every k and t.

    A 4x4 tile of dot products, 4 output channels x 4 taps: per step 8 vector loads feed 16
    FMAs, and the 16 running sums stay in registers for the whole loop ("reassoc" lets LLVM
    keep each one as a vector of partial sums, added up once at the end).
    """
    K, T = grad.shape
    T4 = T - T % 4
    zero = grad.dtype.type(0)
    for k0 in range(0, K, 4):
        d0, d1 = dy_band[k0, :L], dy_band[k0 + 1, :L]
        d2, d3 = dy_band[k0 + 2, :L], dy_band[k0 + 3, :L]
        for t in range(0, T4, 4):
            x0 = band[offsets[t] :][:L]
            x1 = band[offsets[t + 1] :][:L]
            x2 = band[offsets[t + 2] :][:L]
            x3 = band[offsets[t + 3] :][:L]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for i in range(L):
                v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
                e0, e1, e2, e3 = d0[i], d1[i], d2[i], d3[i]
                s00, s01, s02, s03 = s00 + e0 * v0, s01 + e0 * v1, s02 + e0 * v2, s03 + e0 * v3
                s10, s11, s12, s13 = s10 + e1 * v0, s11 + e1 * v1, s12 + e1 * v2, s13 + e1 * v3
                s20, s21, s22, s23 = s20 + e2 * v0, s21 + e2 * v1, s22 + e2 * v2, s23 + e2 * v3
                s30, s31, s32, s33 = s30 + e3 * v0, s31 + e3 * v1, s32 + e3 * v2, s33 + e3 * v3
            _add4(grad[k0], t, s00, s01, s02, s03)
            _add4(grad[k0 + 1], t, s10, s11, s12, s13)
            _add4(grad[k0 + 2], t, s20, s21, s22, s23)
            _add4(grad[k0 + 3], t, s30, s31, s32, s33)
        for t in range(T4, T):
            x0 = band[offsets[t] :][:L]
            s00 = s10 = s20 = s30 = zero
            for i in range(L):
                v0 = x0[i]
                s00, s10 = s00 + d0[i] * v0, s10 + d1[i] * v0
                s20, s30 = s20 + d2[i] * v0, s30 + d3[i] * v0
            grad[k0, t] += s00
            grad[k0 + 1, t] += s10
            grad[k0 + 2, t] += s20
            grad[k0 + 3, t] += s30


@njit(cache=True, fastmath=FAST_MATH)
def _add_row_sums(total, rows, L):
    """total[k] += sum(rows[k, :L]) for every row k."""
    for k in range(rows.shape[0]):
        row = rows[k, :L]
        row_sum = total.dtype.type(0)
        for i in range(L):
            row_sum += row[i]
        total[k] += row_sum


@njit(cache=True)
def _correlate_band(band, offsets, taps, bias, acc, out, p0, rows, sh, sw):
    """out[k, p0 + p, :] for p < rows and every k, from one filled band.

    band (C, band_height, pitch), read as one flat vector; out (K, P, Q) one image's output;
    taps (Kt, T); acc (TILE, >= rows * pitch) the worker's scratch. A run is a stretch of the
    flat band that covers whole output rows: the whole band when sh = 1; with sh > 1 the rows
    in between are not wanted, so each output row is a run of its own.
    """
    K, Q = out.shape[0], out.shape[2]
    pitch = band.shape[2]
    flat = band.reshape(band.size)
    rows_per_run = rows if sh == 1 else 1
    for p1 in range(p0, p0 + rows, rows_per_run):
        start = (p1 - p0) * sh * pitch
        L = (rows_per_run - 1) * pitch + (Q - 1) * sw + 1  # ends at the last column needed
        for k0 in range(0, taps.shape[0], TILE):
            for j in range(TILE):
                a = acc[j]
                for i in range(L):
                    a[i] = bias[k0 + j]
            _shifted_multiply_add(acc, flat, offsets, taps, k0, start, L)
            for j in range(min(TILE, K - k0)):
                for p in range(rows_per_run):
                    src = acc[j, p * pitch :]
                    dst = out[k0 + j, p1 + p]
                    if sw == 1:
                        for q in range(Q):
                            dst[q] = src[q]
                    else:
                        for q in range(Q):
                            dst[q] = src[q * sw]


@njit(cache=True, parallel=True)
def _correlate(src, taps, bias, out, kernel, stride, placement, pitch, band_rows, n_workers):
    """out[n, k] = bias[k] + sum over taps t of taps[k, t] * (src[n] in a band, shifted by t).

    src (N, C, Hs, Ws); taps (Kt, C*R*S) with Kt = K rounded up to TILE; bias (Kt,);
    out (N, K, P, Q); placement (top, left, dil_h, dil_w) says where src sits in the band
    (see _fill_band). The forward passes x with placement (ph, pw, 1, 1); dx passes dy with
    (R-1-ph, S-1-pw, sh, sw), flipped taps and stride 1.
    """
    N, C = src.shape[0], src.shape[1]
    P = out.shape[2]
    R, S = kernel
    sh, sw = stride
    top, left, dil_h, dil_w = placement
    band_height = (band_rows - 1) * sh + R
    offsets = _tap_offsets(C, R, S, band_height, pitch)
    n_bands = (P + band_rows - 1) // band_rows
    for worker in prange(n_workers):
        # The worker's scratch, allocated once and reused by each of its tasks.
        band = np.empty((C, band_height, pitch), dtype=src.dtype)
        acc = np.empty((TILE, band_rows * pitch), dtype=src.dtype)
        for task in range(worker, N * n_bands, n_workers):  # a task: (image, band of rows)
            n = task // n_bands
            p0 = (task % n_bands) * band_rows
            rows = min(band_rows, P - p0)
            _fill_band(src[n], band, p0 * sh, top, left, dil_h, dil_w)
            _correlate_band(band, offsets, taps, bias, acc, out[n], p0, rows, sh, sw)


@njit(cache=True, parallel=True)
def _weight_gradient(dy, x, dw_partial, db_partial, kernel, stride, padding, band_rows):
    """Add every task's dw (as tap rows) and db into its worker's partial sums.

    dy (N, K, P, Q), x (N, C, H, W); dw_partial (workers, Kt, C*R*S) and db_partial
    (workers, Kt) arrive zeroed; Kt is K rounded up to TILE.
    """
    N, C, W = x.shape[0], x.shape[1], x.shape[3]
    K, P, Q = dy.shape[1], dy.shape[2], dy.shape[3]
    n_workers, Kt = dw_partial.shape[0], dw_partial.shape[1]
    R, S = kernel
    sh, sw = stride
    ph, pw = padding
    pitch = W + 2 * pw
    band_height = (band_rows - 1) * sh + R
    dy_height = (band_rows - 1) * sh + 1  # the band's dy rows, dilated by the stride
    offsets = _tap_offsets(C, R, S, band_height, pitch)
    n_bands = (P + band_rows - 1) // band_rows
    one, zero = np.int64(1), np.int64(0)  # typed ints, not literals: see _fill_band
    for worker in prange(n_workers):
        band = np.empty((C, band_height, pitch), dtype=x.dtype)
        dy_band = np.zeros((Kt, dy_height, pitch), dtype=x.dtype)  # channels >= K stay 0
        for task in range(worker, N * n_bands, n_workers):
            n = task // n_bands
            p0 = (task % n_bands) * band_rows
            rows = min(band_rows, P - p0)
            _fill_band(x[n], band, p0 * sh, ph, pw, one, one)
            _fill_band(dy[n], dy_band[:K], p0 * sh, zero, zero, sh, sw)
            L = (rows - 1) * sh * pitch + (Q - 1) * sw + 1  # ends at the last dy entry
            flat_dy = dy_band.reshape(Kt, dy_height * pitch)
            _shifted_dot(dw_partial[worker], flat_dy, band.reshape(band.size), offsets, L)
            _add_row_sums(db_partial[worker], flat_dy, L)


def _tap_rows(w: np.ndarray) -> np.ndarray:
    """w (K, C, R, S) -> (K rounded up to TILE, C*R*S): one row of taps per output channel."""
    K = w.shape[0]
    rows = np.zeros((ceil_div(K, TILE) * TILE, w[0].size), dtype=w.dtype)
    rows[:K] = w.reshape(K, -1)
    return rows


def _plan(N: int, P: int, pitch: int, itemsize: int) -> tuple[int, int]:
    """(band_rows, n_workers) for N images of P output rows with the given band pitch.

    Bands as tall as a run of about RUN_BYTES per channel allows, but at least 4 tasks per
    thread (a batch of one image still keeps every core busy), and rows spread evenly.
    """
    threads = numba.get_num_threads()
    most_rows = max(1, RUN_BYTES // (itemsize * pitch))
    n_bands = min(P, max(ceil_div(P, most_rows), ceil_div(4 * threads, N)))
    band_rows = ceil_div(P, n_bands)
    n_bands = ceil_div(P, band_rows)
    return band_rows, min(threads, N * n_bands)


def conv2d_forward_blocked(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair
) -> np.ndarray:
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    taps = _tap_rows(w)
    bias = np.zeros(len(taps), dtype=x.dtype)
    if b is not None:
        bias[:K] = b
    y = np.empty((N, K, P, Q), dtype=x.dtype)
    pitch = W + 2 * padding[1]
    band_rows, n_workers = _plan(N, P, pitch, x.itemsize)
    placement = (padding[0], padding[1], 1, 1)
    _correlate(x, taps, bias, y, (R, S), stride, placement, pitch, band_rows, n_workers)
    return y


def conv2d_backward_blocked(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dy, x, w = np.ascontiguousarray(dy), np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P = dy.shape[2]

    # dx: dy dilated by the stride and padded by (R-1-ph, S-1-pw), correlated with stride 1
    # with the flipped kernel whose input and output channels trade places.
    flipped = _tap_rows(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C rounded up, K*R*S)
    dx = np.empty_like(x)
    pitch = W + S - 1
    band_rows, n_workers = _plan(N, H, pitch, x.itemsize)
    placement = (R - 1 - padding[0], S - 1 - padding[1], *stride)
    no_bias = np.zeros(len(flipped), dtype=x.dtype)
    _correlate(dy, flipped, no_bias, dx, (R, S), (1, 1), placement, pitch, band_rows, n_workers)

    # dw and db: per-worker partial sums over (image, band) tasks, added up here.
    band_rows, n_workers = _plan(N, P, W + 2 * padding[1], x.itemsize)
    Kt = ceil_div(K, TILE) * TILE
    dw_partial = np.zeros((n_workers, Kt, C * R * S), dtype=x.dtype)
    db_partial = np.zeros((n_workers, Kt), dtype=x.dtype)
    _weight_gradient(dy, x, dw_partial, db_partial, (R, S), stride, padding, band_rows)
    dw = dw_partial.sum(axis=0)[:K].reshape(w.shape)
    return dx, dw, db_partial.sum(axis=0)[:K]


VERSIONS = {
    "naive": {"conv2d_forward": conv2d_forward_naive, "conv2d_backward": conv2d_backward_naive},
    "blocked": {
        "conv2d_forward": conv2d_forward_blocked,
        "conv2d_backward": conv2d_backward_blocked,
    },
}
DEFAULT_VERSION = "blocked"
