"""The engine's elementwise and reduction Functions, differentiated through broadcast shapes.

Broadcasting stretches an operand of shape (3, 1) to (2, 3, 4) in the forward pass; in the
backward pass the gradient of that operand is the upstream gradient *summed* over every axis
that was stretched or added (`autograd.unbroadcast`). Get the axes wrong and the gradient still
has a plausible shape in many cases, so each pair of shapes below is checked against central
finite differences (minirad.gradcheck) and against PyTorch's autograd, for both operands.

Pairs cover every way shapes broadcast: a scalar, leading 1s, middle 1s, trailing 1s, a rank
mismatch, both operands stretched, and square shapes where a sum over the wrong axis would
still give the right shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import assert_close
from minirad.autograd import Tensor, gradcheck

torch = pytest.importorskip("torch")

SHAPE_PAIRS = [
    ((2, 3, 4), ()),  # a scalar
    ((2, 3, 4), (1, 3, 4)),  # a leading 1
    ((2, 3, 4), (2, 1, 4)),  # a middle 1
    ((2, 3, 4), (2, 3, 1)),  # a trailing 1
    ((2, 3, 4), (4,)),  # rank mismatch: leading axes added
    ((2, 3, 4), (3, 1)),  # rank mismatch and a trailing 1
    ((1, 3, 1), (2, 1, 4)),  # both operands stretched
    ((3, 3, 3), (3, 3)),  # square: summing the wrong leading axis keeps the shape
    ((3, 1, 3), (3, 3, 1)),  # square, both stretched
]
# Every pair broadcasts to rank 3, which the reductions' axes below assume.
assert all(len(np.broadcast_shapes(a, b)) == 3 for a, b in SHAPE_PAIRS)

# name -> (minirad, torch): the binary elementwise operations, as a user writes them.
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
}

# Unary elementwise operations and reductions, applied after a broadcasting product, so that
# their backward feeds a broadcast gradient. log and pow need positive inputs: see _inputs.
AFTER = {
    "neg": (lambda y: -y, lambda y: -y),
    "exp": (lambda y: y.exp(), lambda y: y.exp()),
    "log": (lambda y: y.log(), lambda y: y.log()),
    "tanh": (lambda y: y.tanh(), lambda y: y.tanh()),
    "sigmoid": (lambda y: y.sigmoid(), lambda y: y.sigmoid()),
    "relu": (lambda y: y.relu(), lambda y: y.relu()),
    "pow": (lambda y: y**1.5, lambda y: y**1.5),
    "sum": (lambda y: y.sum(), lambda y: y.sum()),
    "sum_axis0": (lambda y: y.sum(axis=0), lambda y: y.sum(dim=0)),
    "sum_last_keepdims": (
        lambda y: y.sum(axis=-1, keepdims=True),
        lambda y: y.sum(dim=-1, keepdim=True),
    ),
    "mean_axes": (lambda y: y.mean(axis=(0, 2)), lambda y: y.mean(dim=(0, 2))),
    "mean_keepdims": (
        lambda y: y.mean(axis=1, keepdims=True),
        lambda y: y.mean(dim=1, keepdim=True),
    ),
}


def _inputs(shape_a, shape_b, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 arrays in [0.5, 1.5]: positive (log, pow, the divisor) and, for relu and
    every kink, away from 0, so finite differences are well defined; with distinct entries."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, shape_a), rng.uniform(0.5, 1.5, shape_b)


def _check(minirad_fn, torch_fn, a: np.ndarray, b: np.ndarray, where: str) -> None:
    ta, tb = Tensor(a.copy(), requires_grad=True), Tensor(b.copy(), requires_grad=True)
    gradcheck(minirad_fn, [ta, tb])  # finite differences; raises naming the input

    # The same gradients as PyTorch's for the same upstream gradient.
    u = np.random.default_rng(1).standard_normal(minirad_fn(ta, tb).shape)
    ta.grad = tb.grad = None
    minirad_fn(ta, tb).backward(u)
    pa = torch.tensor(a, requires_grad=True)
    pb = torch.tensor(b, requires_grad=True)
    torch_fn(pa, pb).backward(torch.tensor(u))
    for name, ours, theirs in (("a", ta.grad, pa.grad), ("b", tb.grad, pb.grad)):
        assert ours.shape == tuple(theirs.shape), f"{where}: d{name} shape {ours.shape}"
        assert_close(ours, theirs.numpy(), 1e-12, f"{where} d{name} vs torch")


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize(("shape_a", "shape_b"), SHAPE_PAIRS, ids=str)
def test_binary_ops_through_broadcasting(op, shape_a, shape_b):
    ours, theirs = BINARY[op]
    a, b = _inputs(shape_a, shape_b, seed=0)
    _check(ours, theirs, a, b, f"{op} {shape_a} x {shape_b}")
    # The other order: the stretched operand first.
    _check(ours, theirs, b, a, f"{op} {shape_b} x {shape_a}")


@pytest.mark.parametrize("after", AFTER)
@pytest.mark.parametrize(("shape_a", "shape_b"), SHAPE_PAIRS, ids=str)
def test_unary_ops_and_reductions_after_broadcasting(after, shape_a, shape_b):
    ours, theirs = AFTER[after]
    a, b = _inputs(shape_a, shape_b, seed=2)
    _check(
        lambda x, y: ours(x * y),
        lambda x, y: theirs(x * y),
        a,
        b,
        f"{after}(a * b) {shape_a} x {shape_b}",
    )
