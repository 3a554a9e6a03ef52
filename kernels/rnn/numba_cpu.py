"""Recurrent cells — tanh-RNN, LSTM, GRU — one time step each, Numba CPU backend.

Shapes:  x (B, I)   h, c, h_new, c_new, dh_new, dc_new (B, H)   w_ih (G*H, I)   w_hh (G*H, H)
         b_ih, b_hh (G*H,)   with G = 1 (tanh-RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n),
         stacked in PyTorch's order.  sigma(a) = 1 / (1 + exp(-a)).

tanh-RNN:  h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh)
LSTM:      [a_i, a_f, a_g, a_o] = x w_ih^T + b_ih + h w_hh^T + b_hh          (each (B, H))
           i, f, o = sigma(a_i), sigma(a_f), sigma(a_o)    g = tanh(a_g)
           c_new = f * c + i * g     h_new = o * tanh(c_new)
           cache = LSTMCache(x, h, c, w_ih, w_hh, gates = [i f g o] (B, 4H), tanh(c_new) (B, H))
GRU:       [gi_r, gi_z, gi_n] = x w_ih^T + b_ih     [gh_r, gh_z, hn] = h w_hh^T + b_hh
           r = sigma(gi_r + gh_r)   z = sigma(gi_z + gh_z)   n = tanh(gi_n + r * hn)
           h_new = (1 - z) * n + z * h
           cache = GRUCache(x, h, w_ih, w_hh, gates = [r z n] (B, 3H), hn (B, H))

Backward, every cell: an elementwise half that turns dh_new (and dc_new) into the gradient of
the pre-activations da (B, G*H) using sigma' = sigma (1 - sigma) and tanh' = 1 - tanh^2 of the
values the forward kept, then a matrix half:
    dx = da_x w_ih    dh = da_h w_hh (+ z * dh_new in the GRU)    dw_ih = da_x^T x
    dw_hh = da_h^T h    db_ih = sum_b da_x    db_hh = sum_b da_h
(da_x = da_h = da except in the GRU, where r scales the hidden part of n: da_h_n = r * da_n).

Versions:
    naive  the formulas as compiled loops, one batch row and one unit at a time, with the exact
           exp and tanh; the matrix products are loops too. Readable, and slow (several times
           the NumPy reference, whose products go to BLAS).
    fused  the default. The matrix products go to BLAS through NumPy at the Python level
           (Numba's np.dot would need SciPy, which minirad does not depend on; at these sizes
           the Python call is a small part of a product's time). Everything elementwise - the
           biases, the activations, c_new, h_new, and in the backward the whole gate gradient
           with the bias gradient - is one compiled pass per call that LLVM vectorises (AVX-512
           here), row by row. What it took, each measured on the LSTM gate pass:
             * sigma and tanh without libm: Numba has no vector math library here, and a call
               to expf/tanhf keeps a loop scalar (most of a step's time when planning). For
               float32, _sigmoid32 (on _exp_nonpositive32, the float32 exp the softmax family
               shares: a degree-6 polynomial, 2^k written into the exponent bits) and _tanh32
               (Eigen's rational function) are branch-free and call nothing: 16 lanes at a
               time, over ten times faster than libm. Worst error over a dense float32 grid on
               [-120, 120]: sigma 2.6 ulp (1.93e-7 relative, NumPy's own float32 formula: 3.3
               ulp; 0 where sigma < 1.2e-38 would be a denormal), tanh 4.4 ulp (2.7e-7
               relative). float64 keeps the exact np.exp / np.tanh, and agrees with the
               reference to ~1e-13; which one a kernel gets is decided at compile time from the
               dtype (fast_sigmoid, fast_tanh, fast_exp_nonpositive);
             * error_model="numpy": with Python's error model every division checks for zero
               and raises ZeroDivisionError, and that branch alone keeps a loop scalar;
             * one 1-D slice per gate: indexing a[n, k * H + j] (or a (B, 4, H) view) leaves
               LLVM unable to prove that the gates do not overlap, and the loop stays scalar;
               the gates also go to a fresh array rather than over the pre-activations, and
               loops that touch more than ~10 arrays are split in two (15-50% faster);
             * float32 constants and `one = dtype.type(1)`: a Python float or int literal would
               promote float32 arithmetic to float64 (half the lanes);
             * no fastmath except FMA contraction inside the float32 activations: the rest of
               the arithmetic keeps the reference's order and rounding, so float64 backward
               passes match the reference bit for bit given the same cache.
           No prange: a pass takes microseconds, less than waking a thread pool, and Numba's
           pool would spin against OpenBLAS's on two cores.

Where the time goes (measured on the benchmark's LSTM sequence, one cell call per step forward
and backward, against torch.nn.LSTM; the timings, and the machine they were measured on, are in
benchmarks/RESULTS.md, "Measurements behind the kernels' design"): the GEMMs take most of every
step and run near the AVX2 peak of one core (torch.mm is no faster at these shapes): the cell is
GEMM-bound. torch.nn.LSTM is faster over a sequence by not being one call per step: it runs
oneDNN's fused LSTM primitive (aten::mkldnn_rnn_layer in torch.profiler), which sees the whole
sequence, and it skips dx, since its input needs no gradient. kernels/lstm_sequence takes both
steps (the products that do not carry the recurrence once per sequence, dx only on request,
these gate passes per step), and the benchmark's LSTM rows time that op now, not this loop.
The first call compiles for seconds; later processes load the machine code from Numba's cache
(cache=True).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from minirad.kernels._check import GRUCache, LSTMCache

# ----------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _sigmoid_exact(a):
    """1 / (1 + exp(-a)) without overflow: exp is only ever taken of -|a|."""
    e = np.exp(-abs(a))
    s = 1 / (1 + e)
    return s if a >= 0 else e * s


# float32 sigma and tanh that LLVM can vectorise: no libm call, no branch (selects only), and
# compiled with error_model="numpy" so that a division carries no ZeroDivisionError check.
# Constants are float32 scalars: a Python float would promote the arithmetic to float64.

# exp(x), x <= 0, the one float32 exp of the Numba kernels (sigma here, the softmax family):
# x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2 (ln2 split in two parts, Cephes' split,
# so that k * _LN2_HI is exact), exp(r) by a degree-6 polynomial, 2^k from the exponent bits.
# k is rounded by adding 1.5 * 2^23: at that magnitude float32 spacing is 1, so the sum rounds
# x / ln2 to the nearest integer k (ties to even) and its low mantissa bits hold k itself.
_LOG2_E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_ROUND_SHIFT = np.float32(12582912.0)  # 1.5 * 2^23
# Coefficients of r^6 ... r^2 of exp(r) ~ 1 + r + c2 r^2 + ... + c6 r^6 on [-ln2/2, ln2/2], fitted
# to minimise the maximum relative error (3.1e-9 in exact arithmetic, below float32's rounding).
_EXP_POLY = tuple(
    np.float32(v)
    for v in (1.3814604608342052e-3, 8.368710987269878e-3, 4.166838899254799e-2,
              1.666652113199234e-1, 4.999999403953552e-1, 1.0, 1.0)
)  # fmt: skip
# Below ln(smallest normal float32) = -87.336544 exp(x) is a denormal (and 2^k would need a
# biased exponent of 0): the result is 0 there, an absolute error below 1.2e-38.
_EXP_UNDERFLOW = np.float32(-87.33654475)
_ZERO32, _ONE32 = np.float32(0), np.float32(1)

# tanh(x) ~ x P(x^2) / Q(x^2): Eigen's 13/6-degree rational interpolant (Eigen/src/Core/
# MathFunctionsImpl.h), within 4.4 float32 ulps (measured) on [-c, c]; x is clamped to c, where
# the quotient is exactly +-1, as float32 tanh is beyond 9. Below 4e-4, x itself is closer to
# tanh(x) than the quotient.
_TANH_CLAMP = np.float32(7.99881172180175781)  # Eigen's c when P and Q are evaluated with FMA
_TANH_TINY = np.float32(0.0004)
_TANH_P = tuple(  # coefficients of x^12, x^10, ..., x^0 of P
    np.float32(v)
    for v in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
              5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
              4.89352455891786e-03)
)  # fmt: skip
_TANH_Q = tuple(  # coefficients of x^6, x^4, x^2, x^0 of Q
    np.float32(v)
    for v in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
              4.89352518554385e-03)
)  # fmt: skip


@intrinsic
def _pow2_of_rounded(typingctx, shifted):
    """2.0 ** k from shifted = k + 1.5 * 2^23 (a float32, k an integer in [-126, 127]), with no
    libm call and no float-to-int conversion: shifted's bits are 0x4B400000 + k, so adding the
    bias 127 and shifting left by 23 leaves exactly (k + 127) << 23 - the bits of 2^k (the bits
    of 0x4B400000 are shifted out)."""
    if not (isinstance(shifted, types.Float) and shifted.bitwidth == 32):
        return None

    def codegen(context, builder, signature, args):
        int32 = ir.IntType(32)
        bits = builder.bitcast(args[0], int32)
        biased = builder.add(bits, ir.Constant(int32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(int32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _exp_nonpositive32(x):
    """exp(x) for float32 x <= 0, branch-free (selects only), so that a loop of it vectorises.
    exp(0) = exp(-0.0) = 1 exactly; 0 for x < -87.336544 (where exp(x) is a denormal) and for
    -inf; NaN for NaN. Measured against np.exp in float64 on every one of the 1.1e9 float32 in
    [-88, 0]: relative error at most 7.71e-8 (0.88 ulp of the correctly rounded float32) where
    exp(x) is a normal float32 (x >= -87.336544), absolute error below 1.18e-38 beneath that.
    Stated bound, which tests/test_fast_exp.py holds it to: 1e-7 relative (about 1.7 ulp at
    worst), 1.2e-38 absolute where the result would be a denormal. It replaced a degree-7
    version that built 2^k in two factors to reach the denormals: 1.5x faster in a loop over
    480k elements (102 against 155 us)."""
    shifted = x * _LOG2_E + _ROUND_SHIFT  # k + 1.5 * 2^23, k the nearest integer to x / ln2
    k = shifted - _ROUND_SHIFT
    r = x - k * _LN2_HI - k * _LN2_LO
    p = _EXP_POLY[0]
    for coefficient in _EXP_POLY[1:]:  # Horner; the loop over a constant tuple is unrolled
        p = p * r + coefficient
    return _ZERO32 if x < _EXP_UNDERFLOW else p * _pow2_of_rounded(shifted)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _sigmoid32(a):
    """The reference's overflow-free form, 1 / (1 + e) or e / (1 + e) with e = exp(-|a|)."""
    e = _exp_nonpositive32(min(a, -a))
    s = _ONE32 / (_ONE32 + e)
    return s if a >= _ZERO32 else e * s


@njit(cache=True, error_model="numpy", fastmath={"contract"})  # contract: FMA in Horner steps
def _tanh32(a):
    """float32 tanh as the rational function above; the identity below 4e-4."""
    x = min(max(a, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = _TANH_P[0]
    for coefficient in _TANH_P[1:]:
        p = p * x2 + coefficient
    q = _TANH_Q[0]
    for coefficient in _TANH_Q[1:]:
        q = q * x2 + coefficient
    return a if abs(a) < _TANH_TINY else x * p / q


def fast_sigmoid(a):
    """sigma in the fused kernels: compiled, it is _sigmoid32 for float32 and the exact formula
    for float64 (the overloads below); this Python body only runs when called uncompiled."""
    return 1 / (1 + np.exp(-a))


def fast_tanh(a):
    """tanh in the fused kernels: _tanh32 for float32, np.tanh for float64."""
    return np.tanh(a)


def fast_exp_nonpositive(x):
    """exp(x) for x <= 0 (an argument such as x - max(x) in a softmax): compiled, it is
    _exp_nonpositive32 for float32 (vectorisable, within 1e-7 relative) and np.exp exactly for
    float64 (the overloads below); this Python body only runs when called uncompiled."""
    return np.exp(x)


def _is_float32(a) -> bool:
    return isinstance(a, types.Float) and a.bitwidth == 32


@overload(fast_sigmoid)
def _fast_sigmoid_for(a):
    """Choose the implementation from the argument's type, once, at compile time."""
    if _is_float32(a):
        return lambda a: _sigmoid32(a)
    return lambda a: _sigmoid_exact(a)


@overload(fast_tanh)
def _fast_tanh_for(a):
    if _is_float32(a):
        return lambda a: _tanh32(a)
    return lambda a: np.tanh(a)


@overload(fast_exp_nonpositive)
def _fast_exp_nonpositive_for(x):
    if _is_float32(x):
        return lambda x: _exp_nonpositive32(x)
    return lambda x: np.exp(x)


# ----------------------------------------------------------------------------------------------
# naive: the formulas as loops
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _affine_naive(x, w, b):
    """out[n, g] = b[g] + sum_k x[n, k] * w[g, k]   (x w^T + b), accumulated in float64."""
    out = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    for n in range(x.shape[0]):
        for g in range(w.shape[0]):
            total = 0.0
            for k in range(x.shape[1]):
                total += x[n, k] * w[g, k]
            out[n, g] = total + b[g]
    return out


@njit(cache=True)
def _weight_grads_naive(da_x, da_h, x, h, w_ih, w_hh):
    """The matrix half of every backward: (dx, dh, dw_ih, dw_hh, db_ih, db_hh) by loops."""
    B, G = da_x.shape
    dx = np.zeros_like(x)
    dh = np.zeros_like(h)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db_ih = np.zeros(G, dtype=x.dtype)
    db_hh = np.zeros(G, dtype=x.dtype)
    for n in range(B):
        for g in range(G):
            for k in range(x.shape[1]):
                dx[n, k] += da_x[n, g] * w_ih[g, k]
                dw_ih[g, k] += da_x[n, g] * x[n, k]
            for k in range(h.shape[1]):
                dh[n, k] += da_h[n, g] * w_hh[g, k]
                dw_hh[g, k] += da_h[n, g] * h[n, k]
            db_ih[g] += da_x[n, g]
            db_hh[g] += da_h[n, g]
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


@njit(cache=True)
def _rnn_tanh_forward_naive(x, h, w_ih, w_hh, b_ih, b_hh):
    a = _affine_naive(x, w_ih, b_ih) + _affine_naive(h, w_hh, b_hh)
    return np.tanh(a)


@njit(cache=True)
def _rnn_tanh_backward_naive(dh_new, x, h, w_ih, w_hh, h_new):
    da = np.empty_like(h_new)
    for n in range(h_new.shape[0]):
        for j in range(h_new.shape[1]):
            da[n, j] = dh_new[n, j] * (1 - h_new[n, j] * h_new[n, j])
    return _weight_grads_naive(da, da, x, h, w_ih, w_hh)


@njit(cache=True)
def _lstm_forward_naive(x, h, c, w_ih, w_hh, b_ih, b_hh):
    B, H = c.shape
    a = _affine_naive(x, w_ih, b_ih) + _affine_naive(h, w_hh, b_hh)  # (B, 4H): i, f, g, o
    gates = np.empty_like(a)
    c_new = np.empty_like(c)
    tanh_c_new = np.empty_like(c)
    h_new = np.empty_like(c)
    for n in range(B):
        for j in range(H):
            i = _sigmoid_exact(a[n, j])
            f = _sigmoid_exact(a[n, H + j])
            g = np.tanh(a[n, 2 * H + j])
            o = _sigmoid_exact(a[n, 3 * H + j])
            gates[n, j], gates[n, H + j], gates[n, 2 * H + j], gates[n, 3 * H + j] = i, f, g, o
            c_new[n, j] = f * c[n, j] + i * g
            tanh_c_new[n, j] = np.tanh(c_new[n, j])
            h_new[n, j] = o * tanh_c_new[n, j]
    return h_new, c_new, gates, tanh_c_new


@njit(cache=True)
def _lstm_backward_naive(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, tanh_c_new):
    B, H = c.shape
    da = np.empty_like(gates)
    dc = np.empty_like(c)
    for n in range(B):
        for j in range(H):
            i, f, g, o = gates[n, j], gates[n, H + j], gates[n, 2 * H + j], gates[n, 3 * H + j]
            tc = tanh_c_new[n, j]
            # c_new reaches the loss directly (dc_new) and through h_new = o * tanh(c_new).
            dc_total = dc_new[n, j] + dh_new[n, j] * o * (1 - tc * tc)
            da[n, j] = dc_total * g * i * (1 - i)
            da[n, H + j] = dc_total * c[n, j] * f * (1 - f)
            da[n, 2 * H + j] = dc_total * i * (1 - g * g)
            da[n, 3 * H + j] = dh_new[n, j] * tc * o * (1 - o)
            dc[n, j] = dc_total * f
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = _weight_grads_naive(da, da, x, h, w_ih, w_hh)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


@njit(cache=True)
def _gru_forward_naive(x, h, w_ih, w_hh, b_ih, b_hh):
    B, H = h.shape
    gi = _affine_naive(x, w_ih, b_ih)  # (B, 3H): r, z, n parts of the input
    gh = _affine_naive(h, w_hh, b_hh)  # (B, 3H): r, z, n parts of the hidden state
    gates = np.empty_like(gi)
    hn = np.empty_like(h)
    h_new = np.empty_like(h)
    for b in range(B):
        for j in range(H):
            r = _sigmoid_exact(gi[b, j] + gh[b, j])  # biases already inside gi and gh
            z = _sigmoid_exact(gi[b, H + j] + gh[b, H + j])
            hn[b, j] = gh[b, 2 * H + j]
            n = np.tanh(gi[b, 2 * H + j] + r * hn[b, j])
            gates[b, j], gates[b, H + j], gates[b, 2 * H + j] = r, z, n
            h_new[b, j] = (1 - z) * n + z * h[b, j]
    return h_new, gates, hn


@njit(cache=True)
def _gru_backward_naive(dh_new, x, h, w_ih, w_hh, gates, hn):
    B, H = h.shape
    da_x = np.empty_like(gates)
    da_h = np.empty_like(gates)
    for b in range(B):
        for j in range(H):
            r, z, n = gates[b, j], gates[b, H + j], gates[b, 2 * H + j]
            da_n = dh_new[b, j] * (1 - z) * (1 - n * n)
            da_z = dh_new[b, j] * (h[b, j] - n) * z * (1 - z)
            da_r = da_n * hn[b, j] * r * (1 - r)
            da_x[b, j], da_x[b, H + j], da_x[b, 2 * H + j] = da_r, da_z, da_n
            da_h[b, j], da_h[b, H + j], da_h[b, 2 * H + j] = da_r, da_z, da_n * r
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = _weight_grads_naive(da_x, da_h, x, h, w_ih, w_hh)
    for b in range(B):
        for j in range(H):
            dh[b, j] += dh_new[b, j] * gates[b, H + j]  # the direct path h -> z * h
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def _contiguous(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """C-contiguous copies of the strided inputs (one compiled specialisation per kernel)."""
    return tuple(np.ascontiguousarray(a) for a in arrays)


def rnn_tanh_cell_forward_naive(
    x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
    b_hh: np.ndarray,
) -> np.ndarray:  # fmt: skip
    return _rnn_tanh_forward_naive(*_contiguous(x, h, w_ih, w_hh, b_ih, b_hh))


def rnn_tanh_cell_backward_naive(
    dh_new: np.ndarray, x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
    h_new: np.ndarray,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    return _rnn_tanh_backward_naive(*_contiguous(dh_new, x, h, w_ih, w_hh, h_new))


def lstm_cell_forward_naive(
    x: np.ndarray, h: np.ndarray, c: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
    b_ih: np.ndarray, b_hh: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, LSTMCache]:  # fmt: skip
    x, h, c, w_ih, w_hh = _contiguous(x, h, c, w_ih, w_hh)
    h_new, c_new, gates, tanh_c_new = _lstm_forward_naive(
        x, h, c, w_ih, w_hh, *_contiguous(b_ih, b_hh)
    )
    return h_new, c_new, LSTMCache(x, h, c, w_ih, w_hh, gates, tanh_c_new)


def lstm_cell_backward_naive(
    dh_new: np.ndarray, dc_new: np.ndarray, cache: LSTMCache
) -> tuple[np.ndarray, ...]:
    return _lstm_backward_naive(*_contiguous(dh_new, dc_new, *cache))


def gru_cell_forward_naive(
    x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
    b_hh: np.ndarray,
) -> tuple[np.ndarray, GRUCache]:  # fmt: skip
    x, h, w_ih, w_hh = _contiguous(x, h, w_ih, w_hh)
    h_new, gates, hn = _gru_forward_naive(x, h, w_ih, w_hh, *_contiguous(b_ih, b_hh))
    return h_new, GRUCache(x, h, w_ih, w_hh, gates, hn)


def gru_cell_backward_naive(dh_new: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, ...]:
    return _gru_backward_naive(*_contiguous(dh_new, *cache))


# ----------------------------------------------------------------------------------------------
# fused: BLAS for the products, one vectorised compiled pass for everything elementwise
# ----------------------------------------------------------------------------------------------

# error_model="numpy": no ZeroDivisionError branch, which would keep the loops scalar. No
# parallel=True: a pass takes 1-9 us, less than waking a thread pool, and Numba's pool would
# spin against OpenBLAS's on two cores.
FUSED: dict[str, Any] = dict(cache=True, error_model="numpy")


@njit(**FUSED)
def _add_preactivations(a_x, a_h, b_ih, b_hh):
    """One batch row, in place: a_x = a_x + b_ih + a_h + b_hh (the reference's order)."""
    for k in range(a_x.shape[0]):
        a_x[k] = a_x[k] + b_ih[k] + a_h[k] + b_hh[k]


@njit(**FUSED)
def _add_column_sums(db, da):
    """db[g] += sum_n da[n, g]: the bias gradient, read row by row (contiguous)."""
    for n in range(da.shape[0]):
        row = da[n]
        for g in range(row.shape[0]):
            db[g] += row[g]


# -- tanh-RNN ----------------------------------------------------------------------------------


@njit(**FUSED)
def _rnn_tanh_forward_pass(a_x, a_h, b_ih, b_hh, h_new):
    for n in range(h_new.shape[0]):
        ax, ah, out = a_x[n], a_h[n], h_new[n]
        for j in range(out.shape[0]):
            out[j] = fast_tanh(ax[j] + b_ih[j] + ah[j] + b_hh[j])


@njit(**FUSED)
def _rnn_tanh_backward_pass(dh_new, h_new, da, db):
    one = h_new.dtype.type(1)  # a literal 1 would promote float32 arithmetic to float64
    for n in range(h_new.shape[0]):
        dhn, hn, out = dh_new[n], h_new[n], da[n]
        for j in range(out.shape[0]):
            out[j] = dhn[j] * (one - hn[j] * hn[j])
    _add_column_sums(db, da)


def rnn_tanh_cell_forward_fused(
    x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
    b_hh: np.ndarray,
) -> np.ndarray:  # fmt: skip
    a_x, a_h = x @ w_ih.T, h @ w_hh.T  # BLAS; fresh C-contiguous (B, H) each
    h_new = np.empty_like(a_x)
    _rnn_tanh_forward_pass(a_x, a_h, *_contiguous(b_ih, b_hh), h_new)
    return h_new


def rnn_tanh_cell_backward_fused(
    dh_new: np.ndarray, x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
    h_new: np.ndarray,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    dh_new, h_new = _contiguous(dh_new, h_new)
    da = np.empty_like(h_new)
    db = np.zeros(h_new.shape[1], h_new.dtype)
    _rnn_tanh_backward_pass(dh_new, h_new, da, db)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h, db, db.copy()


# -- LSTM --------------------------------------------------------------------------------------


@njit(**FUSED)
def _lstm_forward_row(a, c, gates, c_new, tanh_c_new, h_new):
    """One batch row: a (4H,) pre-activations -> gates (4H,), c_new, tanh(c_new), h_new (H,)."""
    H = c.shape[0]
    # One slice per gate, so that LLVM sees separate arrays and vectorises the loop over j.
    a_i, a_f, a_g, a_o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    gate_i, gate_f, gate_g, gate_o = (
        gates[:H], gates[H : 2 * H], gates[2 * H : 3 * H], gates[3 * H :]
    )  # fmt: skip
    # Two loops over j (the gates, then the cell): 20% faster than one loop with all 12 arrays.
    for j in range(H):
        gate_i[j], gate_f[j] = fast_sigmoid(a_i[j]), fast_sigmoid(a_f[j])
        gate_g[j], gate_o[j] = fast_tanh(a_g[j]), fast_sigmoid(a_o[j])
    for j in range(H):
        c_j = gate_f[j] * c[j] + gate_i[j] * gate_g[j]
        tanh_c_j = fast_tanh(c_j)
        c_new[j], tanh_c_new[j], h_new[j] = c_j, tanh_c_j, gate_o[j] * tanh_c_j


@njit(**FUSED)
def _lstm_forward_pass(a_x, a_h, b_ih, b_hh, c, gates, c_new, tanh_c_new, h_new):
    for n in range(c.shape[0]):
        # Row by row, so that the row just summed is still in L1 when its gates are computed.
        _add_preactivations(a_x[n], a_h[n], b_ih, b_hh)
        _lstm_forward_row(a_x[n], c[n], gates[n], c_new[n], tanh_c_new[n], h_new[n])


@njit(**FUSED)
def _lstm_backward_row(dh_new, dc_new, c, gates, tanh_c_new, da, dc):
    """One batch row: (dh_new, dc_new) (H,) -> da (4H,) pre-activation gradient, dc (H,)."""
    H = c.shape[0]
    one = c.dtype.type(1)
    i, f, g, o = gates[:H], gates[H : 2 * H], gates[2 * H : 3 * H], gates[3 * H :]
    da_i, da_f, da_g, da_o = da[:H], da[H : 2 * H], da[2 * H : 3 * H], da[3 * H :]
    # Two loops over j, each with fewer arrays than one would have: 15% faster.
    for j in range(H):
        tc = tanh_c_new[j]
        # c_new reaches the loss directly (dc_new) and through h_new = o * tanh(c_new);
        # dc holds that total gradient of c_new until the second loop.
        dc[j] = dc_new[j] + dh_new[j] * o[j] * (one - tc * tc)
        da_o[j] = dh_new[j] * tc * o[j] * (one - o[j])
    for j in range(H):
        dc_total = dc[j]
        da_i[j] = dc_total * g[j] * i[j] * (one - i[j])
        da_f[j] = dc_total * c[j] * f[j] * (one - f[j])
        da_g[j] = dc_total * i[j] * (one - g[j] * g[j])
        dc[j] = dc_total * f[j]


@njit(**FUSED)
def _lstm_backward_pass(dh_new, dc_new, c, gates, tanh_c_new, da, dc, db):
    for n in range(c.shape[0]):
        _lstm_backward_row(dh_new[n], dc_new[n], c[n], gates[n], tanh_c_new[n], da[n], dc[n])
    _add_column_sums(db, da)


def lstm_cell_forward_fused(
    x: np.ndarray, h: np.ndarray, c: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
    b_ih: np.ndarray, b_hh: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, LSTMCache]:  # fmt: skip
    c = np.ascontiguousarray(c)
    a_x, a_h = x @ w_ih.T, h @ w_hh.T  # BLAS; fresh C-contiguous (B, 4H) each
    gates = np.empty_like(a_x)
    c_new, tanh_c_new, h_new = np.empty_like(c), np.empty_like(c), np.empty_like(c)
    _lstm_forward_pass(a_x, a_h, *_contiguous(b_ih, b_hh), c, gates, c_new, tanh_c_new, h_new)
    return h_new, c_new, LSTMCache(x, h, c, w_ih, w_hh, gates, tanh_c_new)


def lstm_cell_backward_fused(
    dh_new: np.ndarray, dc_new: np.ndarray, cache: LSTMCache
) -> tuple[np.ndarray, ...]:
    x, h, c, w_ih, w_hh, gates, tanh_c_new = cache
    dh_new, dc_new, c, gates, tanh_c_new = _contiguous(dh_new, dc_new, c, gates, tanh_c_new)
    da, dc = np.empty_like(gates), np.empty_like(c)
    db = np.zeros(gates.shape[1], gates.dtype)
    _lstm_backward_pass(dh_new, dc_new, c, gates, tanh_c_new, da, dc, db)
    return da @ w_ih, da @ w_hh, dc, da.T @ x, da.T @ h, db, db.copy()


# -- GRU ---------------------------------------------------------------------------------------


@njit(**FUSED)
def _gru_forward_row(gi, gh, b_ih, b_hh, h, gates, hn, h_new):
    """One batch row: gi = x w_ih^T, gh = h w_hh^T (3H,) without biases -> gates, hn, h_new."""
    H = h.shape[0]
    one = h.dtype.type(1)
    gi_r, gi_z, gi_n = gi[:H], gi[H : 2 * H], gi[2 * H :]
    gh_r, gh_z, gh_n = gh[:H], gh[H : 2 * H], gh[2 * H :]
    bi_r, bi_z, bi_n = b_ih[:H], b_ih[H : 2 * H], b_ih[2 * H :]
    bh_r, bh_z, bh_n = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]
    gate_r, gate_z, gate_n = gates[:H], gates[H : 2 * H], gates[2 * H :]
    for j in range(H):
        r = fast_sigmoid((gi_r[j] + bi_r[j]) + (gh_r[j] + bh_r[j]))
        z = fast_sigmoid((gi_z[j] + bi_z[j]) + (gh_z[j] + bh_z[j]))
        hn_j = gh_n[j] + bh_n[j]
        n = fast_tanh(gi_n[j] + bi_n[j] + r * hn_j)
        gate_r[j], gate_z[j], gate_n[j], hn[j] = r, z, n, hn_j
        h_new[j] = (one - z) * n + z * h[j]


@njit(**FUSED)
def _gru_forward_pass(g_x, g_h, b_ih, b_hh, h, gates, hn, h_new):
    for n in range(h.shape[0]):
        _gru_forward_row(g_x[n], g_h[n], b_ih, b_hh, h[n], gates[n], hn[n], h_new[n])


@njit(**FUSED)
def _gru_backward_row(dh_new, h, gates, hn, da_x, da_h, dh_direct):
    """One batch row -> da_x, da_h (3H,) and the direct path z * dh_new (H,)."""
    H = h.shape[0]
    one = h.dtype.type(1)
    r, z, n = gates[:H], gates[H : 2 * H], gates[2 * H :]
    dax_r, dax_z, dax_n = da_x[:H], da_x[H : 2 * H], da_x[2 * H :]
    for j in range(H):
        da_n = dh_new[j] * (one - z[j]) * (one - n[j] * n[j])
        dax_n[j] = da_n
        dax_z[j] = dh_new[j] * (h[j] - n[j]) * z[j] * (one - z[j])
        dax_r[j] = da_n * hn[j] * r[j] * (one - r[j])
        dh_direct[j] = dh_new[j] * z[j]  # the direct path h -> z * h
    # da_h is da_x but for n, whose hidden part r scales. A second loop: with all ten slices
    # in one loop, LLVM's overlap checks fail and the loop stays scalar (twice as slow).
    da_h[: 2 * H] = da_x[: 2 * H]
    dah_n = da_h[2 * H :]
    for j in range(H):
        dah_n[j] = dax_n[j] * r[j]


@njit(**FUSED)
def _gru_backward_pass(dh_new, h, gates, hn, da_x, da_h, dh_direct, db_ih, db_hh):
    for n in range(h.shape[0]):
        _gru_backward_row(dh_new[n], h[n], gates[n], hn[n], da_x[n], da_h[n], dh_direct[n])
    _add_column_sums(db_ih, da_x)
    _add_column_sums(db_hh, da_h)


def gru_cell_forward_fused(
    x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
    b_hh: np.ndarray,
) -> tuple[np.ndarray, GRUCache]:  # fmt: skip
    h = np.ascontiguousarray(h)
    g_x, g_h = x @ w_ih.T, h @ w_hh.T  # BLAS; fresh C-contiguous (B, 3H) each
    gates, hn, h_new = np.empty_like(g_x), np.empty_like(h), np.empty_like(h)
    _gru_forward_pass(g_x, g_h, *_contiguous(b_ih, b_hh), h, gates, hn, h_new)
    return h_new, GRUCache(x, h, w_ih, w_hh, gates, hn)


def gru_cell_backward_fused(dh_new: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, ...]:
    x, h, w_ih, w_hh, gates, hn = cache
    dh_new, h, gates, hn = _contiguous(dh_new, h, gates, hn)
    da_x, da_h, dh_direct = np.empty_like(gates), np.empty_like(gates), np.empty_like(h)
    db_ih, db_hh = np.zeros(gates.shape[1], gates.dtype), np.zeros(gates.shape[1], gates.dtype)
    _gru_backward_pass(dh_new, h, gates, hn, da_x, da_h, dh_direct, db_ih, db_hh)
    dh = da_h @ w_hh
    dh += dh_direct
    return da_x @ w_ih, dh, da_x.T @ x, da_h.T @ h, db_ih, db_hh


VERSIONS = {
    "naive": {
        "rnn_tanh_cell_forward": rnn_tanh_cell_forward_naive,
        "rnn_tanh_cell_backward": rnn_tanh_cell_backward_naive,
        "lstm_cell_forward": lstm_cell_forward_naive,
        "lstm_cell_backward": lstm_cell_backward_naive,
        "gru_cell_forward": gru_cell_forward_naive,
        "gru_cell_backward": gru_cell_backward_naive,
    },
    "fused": {
        "rnn_tanh_cell_forward": rnn_tanh_cell_forward_fused,
        "rnn_tanh_cell_backward": rnn_tanh_cell_backward_fused,
        "lstm_cell_forward": lstm_cell_forward_fused,
        "lstm_cell_backward": lstm_cell_backward_fused,
        "gru_cell_forward": gru_cell_forward_fused,
        "gru_cell_backward": gru_cell_backward_fused,
    },
}
DEFAULT_VERSION = "fused"
