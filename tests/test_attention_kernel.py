"""The additive-attention op (kernels/attention): every implementation equals the float64
reference, the reference's backward equals finite differences, and the reference equals
PyTorch's autograd of the same formulas.

Shapes: query (B, A), projected_keys (B, L, A), keys (B, L, D), v (A,) (kernels/__init__.py,
Notation). The drawn cases include L = 1 (one position: alpha = 1 whatever the scores) and
saturated scores (tanh near +-1, where float32 tanh is least exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from harness import (
    SCALE_FLOOR,
    Impl,
    assert_all_close,
    assert_dtype,
    impls,
    numerical_vjp,
    reference,
    to_numpy,
)

GRADS = ["dquery", "dprojected_keys", "dkeys", "dv"]


@dataclass(frozen=True)
class AttentionCase:
    B: int
    L: int
    D: int
    A: int
    scale: float = 1.0  # of projected_keys: 5 saturates the tanh
    with_dalpha: bool = True
    seed: int = 0

    def arrays(self, dtype) -> list:
        """query, projected_keys, keys, v, dcontext, dalpha (or None)."""
        rng = np.random.default_rng(self.seed)
        B, L, D, A = self.B, self.L, self.D, self.A
        shapes = [(B, A), (B, L, A), (B, L, D), (A,), (B, D), (B, L)]
        arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
        arrays[1] *= dtype(self.scale)
        if not self.with_dalpha:
            arrays[5] = None
        return arrays


@st.composite
def attention_cases(draw, largest: int = 9) -> AttentionCase:
    size = st.integers(1, largest)
    return AttentionCase(
        B=draw(size), L=draw(size), D=draw(size), A=draw(size),
        scale=draw(st.sampled_from([0.5, 1.0, 5.0])), with_dalpha=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )  # fmt: skip


ONE_POSITION = AttentionCase(B=2, L=1, D=3, A=4)
SATURATED = AttentionCase(B=3, L=5, D=4, A=6, scale=8.0)
REPORT_SHAPES = AttentionCase(B=4, L=64, D=64, A=64)  # the report model's grid, a small batch


def f64(arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def check_attention(impl: Impl, case: AttentionCase) -> None:
    query, projected, keys, v, dcontext, dalpha = case.arrays(impl.dtype)
    where = f"additive_attention [{impl}] {case}"
    ref = reference()
    q_dev, p_dev, k_dev, v_dev = impl.put([query, projected, keys, v])
    context, alpha, hidden = impl.ops.additive_attention_forward(q_dev, p_dev, k_dev, v_dev)
    expected = ref.additive_attention_forward(*f64([query, projected, keys, v]))
    assert_dtype([context, alpha, hidden], impl.dtype, where)
    actual = [to_numpy(a) for a in (context, alpha, hidden)]
    assert_all_close(actual, expected, ["context", "alpha", "hidden"], impl.tol, where)
    dc_dev, da_dev = impl.put([dcontext, dalpha])
    grads = impl.ops.additive_attention_backward(dc_dev, da_dev, alpha, hidden, k_dev, v_dev)
    grads_ref = ref.additive_attention_backward(
        *f64([dcontext, dalpha]), expected[1], expected[2], *f64([keys, v])
    )
    assert_dtype(grads, impl.dtype, where)
    assert_all_close([to_numpy(g) for g in grads], grads_ref, GRADS, impl.tol, f"{where} backward")


@pytest.mark.parametrize("impl", impls("attention"), ids=str)
@given(case=attention_cases())
@example(case=ONE_POSITION)
@example(case=SATURATED)
@example(case=REPORT_SHAPES)
def test_attention(impl: Impl, case: AttentionCase):
    check_attention(impl, case)


@pytest.mark.parametrize("impl", impls("attention", emulated=True), ids=str)
@settings(max_examples=6)
@given(case=attention_cases(largest=4))
@example(case=SATURATED)
def test_attention_emulated(impl: Impl, case: AttentionCase):
    check_attention(impl, case)


@given(case=attention_cases(largest=4))
@settings(max_examples=15)
def test_reference_backward_is_the_finite_difference_gradient(case: AttentionCase):
    """dy^T J of the forward, by central differences in float64, for every input."""
    query, projected, keys, v, dcontext, dalpha = case.arrays(np.float64)
    ref = reference()
    context, alpha, hidden = ref.additive_attention_forward(query, projected, keys, v)
    dalpha_used = np.zeros_like(alpha) if dalpha is None else dalpha

    def forward(q, p, k, w):
        c, a, _ = ref.additive_attention_forward(q, p, k, w)
        return c, a

    expected = numerical_vjp(forward, [query, projected, keys, v], (dcontext, dalpha_used))
    grads = ref.additive_attention_backward(dcontext, dalpha, alpha, hidden, keys, v)
    # The scale floor of the other gradchecks (tests/test_gradcheck.py): a gradient of 1e-5 (a
    # saturated tanh) is checked to 1e-6 absolute, not 1e-11, which is below what central
    # differences can resolve (about 1e-10 here).
    tol = (1e-6, SCALE_FLOOR)
    assert_all_close(list(grads), expected, GRADS, tol, f"finite differences {case}")


def test_reference_equals_torch_autograd():
    torch = pytest.importorskip("torch")
    case = AttentionCase(B=3, L=7, D=5, A=4, scale=2.0)
    query, projected, keys, v, dcontext, dalpha = case.arrays(np.float64)
    ref = reference()
    context, alpha, hidden = ref.additive_attention_forward(query, projected, keys, v)
    grads = ref.additive_attention_backward(dcontext, dalpha, alpha, hidden, keys, v)
    t = [torch.tensor(a, requires_grad=True) for a in (query, projected, keys, v)]
    e = torch.tanh(t[1] + t[0][:, None, :]) @ t[3]
    t_alpha = torch.softmax(e, dim=1)
    t_context = (t_alpha[:, :, None] * t[2]).sum(dim=1)
    loss = (t_context * torch.tensor(dcontext)).sum() + (t_alpha * torch.tensor(dalpha)).sum()
    loss.backward()
    assert_all_close(
        [context, alpha, *grads],
        [t_context.detach().numpy(), t_alpha.detach().numpy(), *(x.grad.numpy() for x in t)],
        ["context", "alpha", *GRADS],
        (1e-12, 1e-12),
        "against torch",
    )
