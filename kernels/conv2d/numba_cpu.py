"""2-D convolution (cross-correlation, as in every deep-learning library), Numba CPU backend.

Shapes:  x (N, C, H, W)   w (K, C, R, S)   b (K,) or None   y and dy (N, K, P, Q)
         stride (sh, sw), padding (ph, pw); x_pad is x with ph zero rows and pw zero columns
         added on each side;  P = (H + 2ph - R) // sh + 1,  Q = (W + 2pw - S) // sw + 1.

Forward:
    y[n, k, p, q] = b[k] + sum_{c, r, s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]
Backward, given dy = dL/dy:
    db[k]          = sum_{n, p, q} dy[n, k, p, q]
    dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x_pad[n, c, p*sh + r, q*sw + s]
    dx_pad[n, c, p*sh + r, q*sw + s] += dy[n, k, p, q] * w[k, c, r, s]   (dx: dx_pad unpadded)

Versions:
    naive    the formulas above as compiled loops, one output (or one dy entry) at a time; the
             padding is an `if` on the index. Serial. The step from formula to compiled code.
    blocked  the default. Same arithmetic, arranged for the vector units and both cores:
      1. Shifted rows. Copy a band of padded input rows into a flat buffer `band` with row
         pitch Wp. With stride 1 the output at flat position i = p*Wp + q is
             y_flat[k, i] = b[k] + sum_t w[k, t] * band[offset[t] + i],
             tap t = (c, r, s),  offset[t] = (c*band_height + r)*Wp + s,
         a sum of shifted copies of one vector: long contiguous multiply-adds that LLVM turns
         into 16-wide (float32) AVX-512 FMAs. The S-1 positions q >= Q at the end of each row
         are computed and thrown away (3% for 3x3 on 64-wide images).
      2. A 4x4 register tile: each pass over a band takes 4 output channels and 4 taps, so
         every loaded input vector feeds 4 FMAs and every accumulator load/store carries 4.
      3. The backward reuses the same two shapes of loop. dx is a stride-1 correlation of dy,
         dilated by the stride (sh-1 zero rows between its rows) and padded by R-1-ph, with the
         kernel flipped and its channel axes swapped (w'[c, k, r, s] = w[k, c, R-1-r, S-1-s]):
         the forward kernel runs on it unchanged. dw[k, t] = sum_i dy_flat[k, i] *
         band[offset[t] + i] is the same shifted vectors as dot products, a 4x4 tile of sums
         held in registers. A stride above 1 costs sh*sw times the needed work in dx and dw
         (the dilation zeros are multiplied) and sw times in the forward; the networks here
         use stride 1 and the code stays one path.
      4. Parallel over (image, band of output rows) tasks: one worker per thread, each with
         its own band buffers, reused from task to task; dw and db are summed per worker and
         the partial sums added at the end, so no two threads write one address.

Why this algorithm (measured on the 2-core AMD EPYC (Zen 5, AVX-512) this was written on,
x (32, 16, 64, 64), w (32, 16, 3, 3), padding 1, float32; see the report for the method):
    im2col + GEMM (the reference's choice) was 4-10x PyTorch's time here: its column buffer is
    R*S = 9 times the input (75 MB), paying page faults, a tall-thin GEMM and the col2im pass.
    A direct loop vectorised along one output row with 4 output channels reached 1.2-2.2x.
    The shifted-row 4x4 tile above: TIMINGS_PLACEHOLDER
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from kernels._check import Pair, conv2d_output_size

# LLVM may fuse a*b + c into one FMA and reorder sums (so that a dot product vectorises), but
# makes no assumption that values are finite: a NaN or inf in the input still reaches the output.
FAST_MATH = {"contract", "reassoc"}

TILE = 4  # output channels per register tile; the weights are padded to a multiple of it
BAND_BYTES = 4096 * 4  # one tile row of the accumulator per band: 4 of them stay in L1 (48 KiB)


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
    """dx, dw, db must arrive zeroed; every dy entry adds its share to all three."""
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
    b = np.zeros(K, x.dtype) if b is None else np.ascontiguousarray(b)
    y = np.empty((N, K, P, Q), dtype=x.dtype)
    _forward_naive(np.ascontiguousarray(x), np.ascontiguousarray(w), b, y, *stride, *padding)
    return y


def conv2d_backward_naive(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx = np.zeros(x.shape, dtype=x.dtype)
    dw = np.zeros(w.shape, dtype=w.dtype)
    db = np.zeros(w.shape[0], dtype=w.dtype)
    _backward_naive(
        np.ascontiguousarray(dy), np.ascontiguousarray(x), np.ascontiguousarray(w),
        dx, dw, db, *stride, *padding,
    )
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# Version "blocked": shifted rows of a padded band, a 4x4 register tile, parallel tasks
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _fill_band(src, band, first_row, top, left, dil_h, dil_w):
    """band[c, i, j] = src[c, (first_row + i - top) / dil_h, (j - left) / dil_w], or 0.

    src (C, H, W) is one image, band (C, band_height, pitch) the buffer a task computes from.
    A band position gets a value when both quotients are whole and inside src, else zero: with
    dilation 1 that is zero padding, with dilation sh the zero rows between dilated rows.
    """
    C, H, W = src.shape
    band_height = band.shape[1]
    pitch = band.shape[2]
    # Source columns j that land inside the band, 0 <= left + j*dil_w < pitch.
    j_lo = max(0, -(left // dil_w))
    j_hi = min(W, (pitch - 1 - left) // dil_w + 1)
    for c in range(C):
        for i in range(band_height):
            row = band[c, i]
            row[:] = 0
            g = first_row + i - top
            if g % dil_h == 0 and 0 <= g // dil_h < H and j_lo < j_hi:
                start = left + j_lo * dil_w
                stop = left + (j_hi - 1) * dil_w + 1
                row[start:stop:dil_w] = src[c, g // dil_h, j_lo:j_hi]


@njit(cache=True)
def _tap_offsets(C, R, S, band_height, pitch):
    """offset[t] of tap t = (c, r, s): where its shifted copy of the band starts."""
    offsets = np.empty(C * R * S, dtype=np.int64)
    for c in range(C):
        for r in range(R):
            for s in range(S):
                offsets[(c * R + r) * S + s] = (c * band_height + r) * pitch + s
    return offsets


@njit(cache=True, fastmath=FAST_MATH)
def _shifted_multiply_add(acc, band, offsets, taps, k0, start, L):
    """acc[j, i] += sum_t taps[k0 + j, t] * band[offsets[t] + start + i],  j < 4, i < L.

    The 4x4 tile: four taps' input vectors are loaded once and feed four output channels.
    Slices (not band[offset + i]) let Numba prove the indices non-negative, which it must
    before LLVM will vectorise the loop.
    """
    T = offsets.shape[0]
    a0, a1, a2, a3 = acc[0, :L], acc[1, :L], acc[2, :L], acc[3, :L]
    w0, w1, w2, w3 = taps[k0], taps[k0 + 1], taps[k0 + 2], taps[k0 + 3]
    t = 0
    while t + 4 <= T:
        o0, o1, o2, o3 = offsets[t] + start, offsets[t + 1] + start, offsets[t + 2] + start, offsets[t + 3] + start
        x0, x1, x2, x3 = band[o0 : o0 + L], band[o1 : o1 + L], band[o2 : o2 + L], band[o3 : o3 + L]
        w00, w01, w02, w03 = w0[t], w0[t + 1], w0[t + 2], w0[t + 3]
        w10, w11, w12, w13 = w1[t], w1[t + 1], w1[t + 2], w1[t + 3]
        w20, w21, w22, w23 = w2[t], w2[t + 1], w2[t + 2], w2[t + 3]
        w30, w31, w32, w33 = w3[t], w3[t + 1], w3[t + 2], w3[t + 3]
        for i in range(L):
            v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
            a0[i] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
            a1[i] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
            a2[i] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
            a3[i] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3
        t += 4
    while t < T:  # the last T % 4 taps, one at a time
        o0 = offsets[t] + start
        x0 = band[o0 : o0 + L]
        w00, w10, w20, w30 = w0[t], w1[t], w2[t], w3[t]
        for i in range(L):
            a0[i] += w00 * x0[i]
            a1[i] += w10 * x0[i]
            a2[i] += w20 * x0[i]
            a3[i] += w30 * x0[i]
        t += 1


@njit(cache=True, fastmath=FAST_MATH)
def _shifted_dot(grad, dy_band, band, offsets, L):
    """grad[k, t] += sum_{i < L} dy_band[k, i] * band[offsets[t] + i]   for every k, t.

    The 4x4 tile again, now of dot products: the 16 sums live in registers for the whole loop.
    """
    K, T = grad.shape
    zero = grad.dtype.type(0)
    for k0 in range(0, K, 4):
        d0, d1, d2, d3 = dy_band[k0, :L], dy_band[k0 + 1, :L], dy_band[k0 + 2, :L], dy_band[k0 + 3, :L]
        t = 0
        while t + 4 <= T:
            o0, o1, o2, o3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
            x0, x1, x2, x3 = band[o0 : o0 + L], band[o1 : o1 + L], band[o2 : o2 + L], band[o3 : o3 + L]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for i in range(L):
                e0, e1, e2, e3 = d0[i], d1[i], d2[i], d3[i]
                v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
                s00 += e0 * v0; s01 += e0 * v1; s02 += e0 * v2; s03 += e0 * v3
                s10 += e1 * v0; s11 += e1 * v1; s12 += e1 * v2; s13 += e1 * v3
                s20 += e2 * v0; s21 += e2 * v1; s22 += e2 * v2; s23 += e2 * v3
                s30 += e3 * v0; s31 += e3 * v1; s32 += e3 * v2; s33 += e3 * v3
            grad[k0, t] += s00; grad[k0, t + 1] += s01; grad[k0, t + 2] += s02; grad[k0, t + 3] += s03
            grad[k0 + 1, t] += s10; grad[k0 + 1, t + 1] += s11; grad[k0 + 1, t + 2] += s12; grad[k0 + 1, t + 3] += s13
            grad[k0 + 2, t] += s20; grad[k0 + 2, t + 1] += s21; grad[k0 + 2, t + 2] += s22; grad[k0 + 2, t + 3] += s23
            grad[k0 + 3, t] += s30; grad[k0 + 3, t + 1] += s31; grad[k0 + 3, t + 2] += s32; grad[k0 + 3, t + 3] += s33
            t += 4
        while t < T:
            o0 = offsets[t]
            x0 = band[o0 : o0 + L]
            s00 = s10 = s20 = s30 = zero
            for i in range(L):
                s00 += d0[i] * x0[i]
                s10 += d1[i] * x0[i]
                s20 += d2[i] * x0[i]
                s30 += d3[i] * x0[i]
            grad[k0, t] += s00
            grad[k0 + 1, t] += s10
            grad[k0 + 2, t] += s20
            grad[k0 + 3, t] += s30
            t += 1


@njit(cache=True, parallel=True)
def _correlate(src, taps, bias, out, R, S, sh, sw, top, left, dil_h, dil_w, pitch, band_rows):
    """out[n, k, p, q] = bias[k] + sum_{c,r,s} taps[k, (c*R + r)*S + s] * src_band[n, c, p*sh + r, q*sw + s]

    where src_band is src placed in a zero band by `_fill_band(top, left, dil_h, dil_w)` with
    row pitch `pitch`. The forward runs it on x (top, left = padding; dilation 1), the dx
    backward on dy (top, left = R-1-ph, S-1-pw; dilation = stride; stride 1).
    taps (Kt, C*R*S) with Kt the channels of `out` rounded up to a multiple of TILE.
    """
    N, C = src.shape[0], src.shape[1]
    K, P, Q = out.shape[1], out.shape[2], out.shape[3]
    Kt = taps.shape[0]
    band_height = (band_rows - 1) * sh + R
    n_bands = (P + band_rows - 1) // band_rows
    n_tasks = N * n_bands
    offsets = _tap_offsets(C, R, S, band_height, pitch)
    n_workers = min(numba.get_num_threads(), n_tasks)
    # With stride 1 a band's rows are one run of the flat buffer; otherwise one row at a time.
    chunk_len = band_rows * pitch if sh == 1 else pitch
    for worker in prange(n_workers):
        band = np.empty(C * band_height * pitch, dtype=src.dtype)
        acc = np.empty((TILE, chunk_len), dtype=src.dtype)
        for task in range(worker, n_tasks, n_workers):
            n = task // n_bands
            p0 = (task % n_bands) * band_rows
            rows = min(band_rows, P - p0)
            _fill_band(src[n], band.reshape(C, band_height, pitch), p0 * sh, top, left, dil_h, dil_w)
            rows_per_chunk = rows if sh == 1 else 1
            for p1 in range(p0, p0 + rows, rows_per_chunk):
                start = (p1 - p0) * sh * pitch
                # Up to the last output column needed: every read stays inside the band.
                L = (rows_per_chunk - 1) * pitch + (Q - 1) * sw + 1
                for k0 in range(0, Kt, TILE):
                    for j in range(TILE):
                        acc[j, :L] = bias[k0 + j]
                    _shifted_multiply_add(acc, band, offsets, taps, k0, start, L)
                    for j in range(min(TILE, K - k0)):
                        for p in range(rows_per_chunk):
                            a = p * pitch
                            out[n, k0 + j, p1 + p, :] = acc[j, a : a + (Q - 1) * sw + 1 : sw]


@njit(cache=True, parallel=True)
def _weight_gradient(dy, x, Kt, R, S, sh, sw, ph, pw, band_rows):
    """dw as (Kt, C*R*S) tap rows and db (Kt,): sums over images and bands, per worker."""
    N, C, H, W = x.shape
    K, P, Q = dy.shape[1], dy.shape[2], dy.shape[3]
    pitch = W + 2 * pw
    band_height = (band_rows - 1) * sh + R
    dy_height = (band_rows - 1) * sh + 1  # dy rows dilated by the stride
    n_bands = (P + band_rows - 1) // band_rows
    n_tasks = N * n_bands
    offsets = _tap_offsets(C, R, S, band_height, pitch)
    n_workers = min(numba.get_num_threads(), n_tasks)
    dw_partial = np.zeros((n_workers, Kt, C * R * S), dtype=x.dtype)
    db_partial = np.zeros((n_workers, Kt), dtype=x.dtype)
    for worker in prange(n_workers):
        band = np.empty(C * band_height * pitch, dtype=x.dtype)
        dy_band = np.zeros((Kt, dy_height * pitch), dtype=x.dtype)  # rows >= K stay zero
        for task in range(worker, n_tasks, n_workers):
            n = task // n_bands
            p0 = (task % n_bands) * band_rows
            rows = min(band_rows, P - p0)
            _fill_band(x[n], band.reshape(C, band_height, pitch), p0 * sh, ph, pw, 1, 1)
            _fill_band(
                dy[n], dy_band[:K].reshape(K, dy_height, pitch), p0 * sh, 0, 0, sh, sw
            )
            L = (rows - 1) * sh * pitch + (Q - 1) * sw + 1
            _shifted_dot(dw_partial[worker], dy_band, band, offsets, L)
            for k in range(K):
                db_partial[worker, k] += dy_band[k, :L].sum()
    return dw_partial.sum(axis=0), db_partial.sum(axis=0)


def _tap_rows(w: np.ndarray) -> np.ndarray:
    """w (K, C, R, S) -> (K rounded up to TILE, C*R*S): one row of taps per output channel."""
    K = w.shape[0]
    rows = np.zeros((-(-K // TILE) * TILE, w[0].size), dtype=w.dtype)
    rows[:K] = w.reshape(K, -1)
    return rows


def _band_rows(P: int, pitch: int, itemsize: int) -> int:
    """Output rows per task: about BAND_BYTES of accumulator per channel, split evenly."""
    target = max(1, BAND_BYTES // (itemsize * pitch))
    n_bands = -(-P // target)
    return -(-P // n_bands)


def conv2d_forward_blocked(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Pair
) -> np.ndarray:
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    taps = _tap_rows(w)
    bias = np.zeros(taps.shape[0], dtype=x.dtype)
    if b is not None:
        bias[:K] = b
    y = np.empty((N, K, P, Q), dtype=x.dtype)
    pitch = W + 2 * padding[1]
    _correlate(
        x, taps, bias, y, R, S, *stride, *padding, 1, 1, pitch, _band_rows(P, pitch, x.itemsize)
    )
    return y


def conv2d_backward_blocked(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dy, x, w = np.ascontiguousarray(dy), np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P = dy.shape[2]
    # dx: dy dilated by the stride and padded by R-1-ph, S-1-pw, correlated (stride 1) with
    # the flipped kernel whose input and output channels trade places.
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, K, R, S)
    taps = _tap_rows(flipped)
    dx = np.empty_like(x)
    pitch = W + S - 1
    _correlate(
        dy, taps, np.zeros(taps.shape[0], dtype=x.dtype), dx, R, S, 1, 1,
        R - 1 - padding[0], S - 1 - padding[1], *stride, pitch, _band_rows(H, pitch, x.itemsize),
    )
    Kt = -(-K // TILE) * TILE
    pitch = W + 2 * padding[1]
    dw_rows, db = _weight_gradient(
        dy, x, Kt, R, S, *stride, *padding, _band_rows(P, pitch, x.itemsize)
    )
    return dx, dw_rows[:K].reshape(w.shape), db[:K]


VERSIONS = {
    "naive": {"conv2d_forward": conv2d_forward_naive, "conv2d_backward": conv2d_backward_naive},
    "blocked": {
        "conv2d_forward": conv2d_forward_blocked,
        "conv2d_backward": conv2d_backward_blocked,
    },
}
DEFAULT_VERSION = "blocked"
