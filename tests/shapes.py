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

    @property
    def out_size(self) -> tuple[int, int]:
        P = (self.H + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        Q = (self.W + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return P, Q

    def arrays(self, dtype):
        """x (N,C,H,W) with distinct values (no ties), dy (N,C,P,Q)."""
        rng = np.random.default_rng(self.seed)
        size = self.N * self.C * self.H * self.W
        # A permutation scaled apart: every window has one clear maximum, so the argmax and the
        # finite differences are well defined, in float32 as in float64.
        values = (rng.permutation(size) - size / 2) / max(size, 1) * 4
        x = values.reshape(self.N, self.C, self.H, self.W).astype(dtype)
        if not self.contiguous:
            x = np.repeat(x, 2, axis=3)[..., ::2]
        dy = random_array(rng, (self.N, self.C, *self.out_size), dtype, self.contiguous)
        return x, dy


@st.composite
def pool_cases(draw, max_size: int = 9) -> PoolCase:
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
