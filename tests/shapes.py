"""Hypothesis strategies for the kernels' shapes and hyper-parameters, edges included.

Each strategy draws a small *case*: the shapes, the hyper-parameters, whether the inputs are
non-contiguous views, and a seed. The arrays themselves come from `case.arrays(dtype)` with a
NumPy generator seeded by that seed, so a failing case prints as a handful of integers that
hypothesis can shrink (to batch 1, the smallest image, stride 1, ...), and the same arrays are
rebuilt in any dtype for the comparison against the float64 reference.

Edges the strategies reach on purpose (DESIGN.md, testing doctrine): batch 1, 1x1 images, a
kernel as large as the (padded) input, stride larger than the kernel, padding, odd sizes, hidden
size 1, non-contiguous inputs; every case is small enough for the simulator and the emulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

SMALL = st.integers(1, 3)


# Contiguous first: a failing example shrinks towards sampled_from's first value, so the minimal
# case hypothesis reports uses plain arrays unless the strided view is what breaks the kernel.
# (st.booleans() would shrink to False, a strided view, and make every minimal case look odd.)
CONTIGUOUS_FIRST = st.sampled_from([True, False])


def random_array(rng: np.random.Generator, shape, dtype, contiguous: bool = True) -> np.ndarray:
    """Standard normal entries; a strided view (every other column) when not `contiguous`."""
    if contiguous or len(shape) == 0:
        return rng.standard_normal(shape).astype(dtype)
    wide = rng.standard_normal((*shape[:-1], 2 * shape[-1])).astype(dtype)
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or shape[-1] == 1
    return view


@dataclass(frozen=True)
class ConvCase:
    N: int
    C: int
    K: int
    H: int
    W: int
    R: int
    S: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    bias: bool
    contiguous: bool
    seed: int

    @property
    def out_size(self) -> tuple[int, int]:
        P = (self.H + 2 * self.padding[0] - self.R) // self.stride[0] + 1
        Q = (self.W + 2 * self.padding[1] - self.S) // self.stride[1] + 1
        return P, Q

    def arrays(self, dtype):
        """x (N,C,H,W), w (K,C,R,S), b (K,) or None, dy (N,K,P,Q)."""
        rng = np.random.default_rng(self.seed)
        x = random_array(rng, (self.N, self.C, self.H, self.W), dtype, self.contiguous)
        w = random_array(rng, (self.K, self.C, self.R, self.S), dtype, self.contiguous)
        b = random_array(rng, (self.K,), dtype) if self.bias else None
        dy = random_array(rng, (self.N, self.K, *self.out_size), dtype, self.contiguous)
        return x, w, b, dy


@st.composite
def conv_cases(draw, max_size: int = 9, max_channels: int = 4) -> ConvCase:
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    # The padded input must hold one window: H + 2*ph >= R. 'H = R - 2*ph' is the
    # kernel-as-large-as-the-input edge; hypothesis shrinks toward it.
    H = draw(st.integers(max(1, R - 2 * padding[0]), max_size))
    W = draw(st.integers(max(1, S - 2 * padding[1]), max_size))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))  # up to beyond the kernel
    return ConvCase(
        N=draw(SMALL),
        C=draw(st.integers(1, max_channels)),
        K=draw(st.integers(1, max_channels)),
        H=H,
        W=W,
        R=R,
        S=S,
        stride=stride,
        padding=padding,
        bias=draw(st.booleans()),
        contiguous=draw(CONTIGUOUS_FIRST),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@dataclass(frozen=True)
class PoolCase:
    N: int
    C: int
    H: int
    W: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    contiguous: bool
    seed: int
    # "distinct": no two inputs equal; "ties": integers in {-1, 0, 1}, so windows tie and many
    # are constant; "neg_inf": mostly -inf, so whole windows are -inf (as padding is); "nan":
    # ties with a third NaN, so windows hold one NaN or several (not drawn by pool_cases: the
    # properties and finite differences need numbers).
    values: str = "distinct"

    @property
    def out_size(self) -> tuple[int, int]:
        P = (self.H + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        Q = (self.W + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return P, Q

    def arrays(self, dtype):
        """x (N,C,H,W) with values of the kind `values` names, dy (N,C,P,Q)."""
        rng = np.random.default_rng(self.seed)
        size = self.N * self.C * self.H * self.W
        if self.values == "ties":
            values = rng.integers(-1, 2, size).astype(np.float64)
        elif self.values == "neg_inf":
            values = np.where(rng.random(size) < 0.7, -np.inf, rng.integers(0, 2, size))
        elif self.values == "nan":
            values = np.where(rng.random(size) < 0.3, np.nan, rng.integers(-1, 2, size))
        else:
            # A permutation scaled apart: every window has one clear maximum, so the argmax
            # and the finite differences are well defined, in float32 as in float64.
            values = (rng.permutation(size) - size / 2) / max(size, 1) * 4
        x = values.reshape(self.N, self.C, self.H, self.W).astype(dtype)
        if not self.contiguous:
            x = np.repeat(x, 2, axis=3)[..., ::2]
        dy = random_array(rng, (self.N, self.C, *self.out_size), dtype, self.contiguous)
        return x, dy


POOL_VALUES = ("distinct", "ties", "neg_inf")


@st.composite
def pool_cases(draw, max_size: int = 9, values: tuple[str, ...] = POOL_VALUES) -> PoolCase:
    """Pooling cases; `values` the kinds of input drawn (finite differences need "distinct":
    at a tie the max is not differentiable)."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    H = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), max_size))
    W = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), max_size))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return PoolCase(
        N=draw(SMALL),
        C=draw(st.integers(1, 3)),
        H=H,
        W=W,
        kernel=kernel,
        stride=stride,
        padding=padding,
        contiguous=draw(CONTIGUOUS_FIRST),
        seed=draw(st.integers(0, 2**32 - 1)),
        values=draw(st.sampled_from(values)),
    )


@dataclass(frozen=True)
class LinearCase:
    N: int
    n_in: int
    n_out: int
    bias: bool
    contiguous: bool
    seed: int

    def arrays(self, dtype):
        """x (N, in), w (out, in), b (out,) or None, dy (N, out)."""
        rng = np.random.default_rng(self.seed)
        x = random_array(rng, (self.N, self.n_in), dtype, self.contiguous)
        w = random_array(rng, (self.n_out, self.n_in), dtype, self.contiguous)
        b = random_array(rng, (self.n_out,), dtype) if self.bias else None
        dy = random_array(rng, (self.N, self.n_out), dtype, self.contiguous)
        return x, w, b, dy


@st.composite
def linear_cases(draw) -> LinearCase:
    return LinearCase(
        N=draw(st.integers(1, 6)),
        n_in=draw(st.integers(1, 12)),
        n_out=draw(st.integers(1, 12)),
        bias=draw(st.booleans()),
        contiguous=draw(CONTIGUOUS_FIRST),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@dataclass(frozen=True)
class CellCase:
    """One step of a recurrent cell: batch B, input I, hidden H, with G gates."""

    B: int
    I: int
    H: int
    scale: float  # weight scale: large values saturate the sigmoids and tanh
    contiguous: bool
    seed: int

    def arrays(self, gates: int, dtype):
        """x (B,I), h (B,H), c (B,H), w_ih (G*H,I), w_hh (G*H,H), b_ih, b_hh (G*H,),
        and two upstream gradients dh_new, dc_new (B,H)."""
        rng = np.random.default_rng(self.seed)
        GH = gates * self.H
        x = random_array(rng, (self.B, self.I), dtype, self.contiguous)
        h = random_array(rng, (self.B, self.H), dtype, self.contiguous)
        c = random_array(rng, (self.B, self.H), dtype)
        w_ih = (self.scale * random_array(rng, (GH, self.I), dtype, self.contiguous)).astype(dtype)
        w_hh = (self.scale * random_array(rng, (GH, self.H), dtype)).astype(dtype)
        b_ih = random_array(rng, (GH,), dtype)
        b_hh = random_array(rng, (GH,), dtype)
        dh_new = random_array(rng, (self.B, self.H), dtype)
        dc_new = random_array(rng, (self.B, self.H), dtype)
        return x, h, c, w_ih, w_hh, b_ih, b_hh, dh_new, dc_new


@st.composite
def cell_cases(draw) -> CellCase:
    return CellCase(
        B=draw(st.integers(1, 4)),
        I=draw(st.integers(1, 6)),
        H=draw(st.integers(1, 6)),
        scale=draw(st.sampled_from([0.1, 1.0, 5.0])),
        contiguous=draw(CONTIGUOUS_FIRST),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@dataclass(frozen=True)
class SoftmaxCase:
    shape: tuple[int, ...]
    axis: int
    scale: float  # logits spread: 100 stresses the max-shift (exp(100) overflows float32)
    ignore_every: int  # every k-th target is ignore_index (0: none)
    contiguous: bool
    seed: int

    def arrays(self, dtype):
        """x (shape), dy (shape), and for the 2-D cross-entropy: targets (shape[0],) int64."""
        rng = np.random.default_rng(self.seed)
        x = (self.scale * random_array(rng, self.shape, dtype, self.contiguous)).astype(dtype)
        dy = random_array(rng, self.shape, dtype, self.contiguous)
        targets = rng.integers(0, self.shape[-1], size=self.shape[0])
        if self.ignore_every:
            targets[:: self.ignore_every] = -100
        return x, dy, targets


@st.composite
def softmax_cases(draw, rank: int | None = None) -> SoftmaxCase:
    ndim = rank if rank is not None else draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim)))
    return SoftmaxCase(
        shape=shape,
        axis=draw(st.integers(-ndim, ndim - 1)),
        scale=draw(st.sampled_from([1.0, 10.0, 100.0])),
        ignore_every=draw(st.sampled_from([0, 0, 2, 3])),
        contiguous=draw(CONTIGUOUS_FIRST),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


# ----------------------------------------------------------------------------------------------
# Block edges: sizes on both sides of every block a fast version cuts its work into
# ----------------------------------------------------------------------------------------------
#
# A blocked or tiled kernel has one code path for a full block and another for the partial block
# at the end, and a bug in either (a loop bound off by one, the offset of the second block) is
# invisible while every dimension fits in one block. The strategies above draw sizes up to 7-12,
# so they never reach the second row block of a 16-row blocking. The cases below put the blocked
# dimensions exactly at the edges: one short of a block, a full block, one over, and two full
# blocks plus a partial third. The widths come from the kernels' own constants (tests/harness.py,
# `block_widths`), so a retuned constant moves the edges with it.


def sizes_around(*widths: int) -> tuple[int, ...]:
    """w - 1, w, w + 1 and 2w + 1 for each block width w (sorted, sizes >= 1, no repeats)."""
    sizes = {size for w in widths for size in (w - 1, w, w + 1, 2 * w + 1)}
    return tuple(sorted(size for size in sizes if size >= 1))


def _factor_pair(n: int) -> tuple[int, int]:
    """(h, w) with h * w == n and h the largest divisor of n not above sqrt(n)."""
    h = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    return h, n // h


def _edge_sizes(widths: dict[str, tuple[int, ...]], dims: tuple[str, ...]) -> list[dict]:
    """One dict {dim: size} per case: case i takes the i-th edge size of every dimension, and
    a dimension with fewer edge sizes its smallest one past its end. So every edge of every
    dimension occurs once, the number of cases is that of the longest list, and the largest
    sizes of two dimensions do not meet in one case (emulated threads are slow).

    A dimension that is not blocked in this implementation keeps a small size (3)."""
    lists = {dim: sizes_around(*widths[dim]) if dim in widths else (3,) for dim in dims}
    count = max(len(sizes) for sizes in lists.values())
    return [
        {dim: sizes[i] if i < len(sizes) else sizes[0] for dim, sizes in lists.items()}
        for i in range(count)
    ]


def conv_edge_cases(widths: dict[str, tuple[int, ...]]) -> list[ConvCase]:
    """Convolutions whose channel counts and output pixel count sit at block edges.

    K = C = channels: the forward tiles K, the backward's flipped kernel turns C into its
    output channels, and with a 1 x 1 kernel the GEMM depth C*R*S is C too. The image is
    H x W = pixels (P x Q with stride 1, no padding; the index arithmetic of windows, strides
    and padding is the drawn cases' job). Biases are distinct per output channel, so a tile
    that reads another tile's bias is seen."""
    cases = []
    for i, sizes in enumerate(_edge_sizes(widths, ("channels", "pixels"))):
        H, W = _factor_pair(sizes["pixels"])
        channels = sizes["channels"]
        cases.append(
            ConvCase(1, channels, channels, H, W, 1, 1, (1, 1), (0, 0), True, True, seed=i)
        )
    return cases


def pool_edge_cases(widths: dict[str, tuple[int, ...]]) -> list[PoolCase]:
    """2x2 pools whose output element count N*C*P*Q sits at the edges of a 1-D grid."""
    cases = []
    for i, sizes in enumerate(_edge_sizes(widths, ("outputs",))):
        P, Q = _factor_pair(sizes["outputs"])
        cases.append(PoolCase(1, 1, 2 * P, 2 * Q, (2, 2), (2, 2), (0, 0), True, seed=i))
    return cases


def linear_edge_cases(widths: dict[str, tuple[int, ...]]) -> list[LinearCase]:
    """Products whose rows (N), inputs and outputs sit at the edges of row and column blocks."""
    return [
        LinearCase(sizes["N"], sizes["n_in"], sizes["n_out"], True, True, seed=i)
        for i, sizes in enumerate(_edge_sizes(widths, ("N", "n_in", "n_out")))
    ]


def cell_edge_cases(widths: dict[str, tuple[int, ...]]) -> list[CellCase]:
    """Cell steps whose hidden size sits at block edges (batch 3, input 3): the gate math's
    1-D grids over B*H and B*G*H then cross a block of threads too. (The products are the
    linear folder's matmul, whose edges linear_edge_cases reach.)"""
    return [
        CellCase(B=3, I=3, H=sizes["H"], scale=1.0, contiguous=True, seed=i)
        for i, sizes in enumerate(_edge_sizes(widths, ("H",)))
    ]


def softmax_edge_cases(widths: dict[str, tuple[int, ...]]) -> list[SoftmaxCase]:
    """(rows, row length) at the edges: a row per thread block strides over its columns, a
    thread per row covers the rows with a 1-D grid. Every third target ignored."""
    return [
        SoftmaxCase((sizes["rows"], sizes["columns"]), -1, 10.0, 3, True, seed=i)
        for i, sizes in enumerate(_edge_sizes(widths, ("rows", "columns")))
    ]
