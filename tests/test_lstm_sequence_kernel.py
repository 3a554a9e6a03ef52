"""The whole-sequence LSTM op (kernels/lstm_sequence): every implementation equals the float64
reference; the reference equals a loop of the rnn family's LSTM cell, finite differences and
torch.nn.LSTM; the contract refuses bad shapes, naming the argument.

Shapes: x (T, B, I), h0, c0 (B, H), w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,); hs and dhs
(T, B, H); dh_n, dc_n (B, H) (kernels/__init__.py, Notation). The drawn cases include T = 1
(one step: the op is one cell call), B = 1, H = 1, strided x and h0, and saturated gates.
"""

from __future__ import annotations

import re
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
from minirad import kernels
from minirad.kernels._check import LSTMSequenceCache
from shapes import random_array

GRADS = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"]
OUTPUTS = ["hs", "h_n", "c_n"]
CACHED = ["h_prev", "c_prev", "gates", "tanh_c"]  # the arrays the forward computed


@dataclass(frozen=True)
class SequenceCase:
    T: int
    B: int
    I: int
    H: int
    scale: float = 1.0  # of the weights: 5 saturates the gates
    contiguous: bool = True  # False: x and h0 are strided views
    need_dx: bool = True
    seed: int = 0

    def arrays(self, dtype) -> list[np.ndarray]:
        """x, h0, c0, w_ih, w_hh, b_ih, b_hh, then the upstream gradients dhs, dh_n, dc_n."""
        rng = np.random.default_rng(self.seed)
        T, B, I, H = self.T, self.B, self.I, self.H
        x = random_array(rng, (T, B, I), dtype, self.contiguous)
        h0 = random_array(rng, (B, H), dtype, self.contiguous)
        c0 = random_array(rng, (B, H), dtype)
        w_ih = (self.scale * random_array(rng, (4 * H, I), dtype)).astype(dtype)
        w_hh = (self.scale * random_array(rng, (4 * H, H), dtype)).astype(dtype)
        b_ih, b_hh = random_array(rng, (4 * H,), dtype), random_array(rng, (4 * H,), dtype)
        dhs = random_array(rng, (T, B, H), dtype)
        dh_n, dc_n = random_array(rng, (B, H), dtype), random_array(rng, (B, H), dtype)
        return [x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dh_n, dc_n]


@st.composite
def sequence_cases(draw, largest: int = 5) -> SequenceCase:
    size = st.integers(1, largest)
    return SequenceCase(
        T=draw(size), B=draw(size), I=draw(size), H=draw(size),
        scale=draw(st.sampled_from([0.1, 1.0, 3.0])), contiguous=draw(st.booleans()),
        need_dx=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
    )  # fmt: skip


ONE_STEP = SequenceCase(T=1, B=1, I=1, H=1)
SATURATED = SequenceCase(T=4, B=3, I=2, H=3, scale=5.0, contiguous=False, seed=1)
# Odd widths past the 16 float32 lanes of a vector register (H = 33: two vectors and a tail).
WIDE = SequenceCase(T=6, B=5, I=17, H=33, need_dx=False, seed=2)


def f64(arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def check_sequence(impl: Impl, case: SequenceCase) -> None:
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dh_n, dc_n = case.arrays(impl.dtype)
    inputs = [x, h0, c0, w_ih, w_hh, b_ih, b_hh]
    where = f"lstm_sequence [{impl}] {case}"
    ref = reference()
    hs, h_n, c_n, cache = impl.ops.lstm_sequence_forward(*impl.put(inputs))
    hs_ref, h_n_ref, c_n_ref, cache_ref = ref.lstm_sequence_forward(*f64(inputs))
    assert isinstance(cache, LSTMSequenceCache), f"{where}: cache is {type(cache).__name__}"
    computed = [hs, h_n, c_n, *(getattr(cache, name) for name in CACHED)]
    assert_dtype(computed, impl.dtype, where)
    assert_all_close(
        [to_numpy(a) for a in computed],
        [hs_ref, h_n_ref, c_n_ref, *(getattr(cache_ref, name) for name in CACHED)],
        [*OUTPUTS, *(f"cache.{name}" for name in CACHED)],
        impl.tol,
        f"{where} forward",
    )
    upstream = impl.put([dhs, dh_n, dc_n])
    grads = impl.ops.lstm_sequence_backward(*upstream, cache, need_dx=case.need_dx)
    grads_ref = ref.lstm_sequence_backward(*f64([dhs, dh_n, dc_n]), cache_ref, need_dx=True)
    if not case.need_dx:
        assert grads[0] is None, f"{where}: dx computed although need_dx is False"
        grads, grads_ref = grads[1:], grads_ref[1:]
    names = GRADS if case.need_dx else GRADS[1:]
    assert_dtype(grads, impl.dtype, where)
    assert_all_close([to_numpy(g) for g in grads], grads_ref, names, impl.tol, f"{where} backward")


@pytest.mark.parametrize("impl", impls("lstm_sequence"), ids=str)
@given(case=sequence_cases())
@example(case=ONE_STEP)
@example(case=SATURATED)
@example(case=WIDE)
def test_lstm_sequence(impl: Impl, case: SequenceCase):
    check_sequence(impl, case)


@pytest.mark.parametrize("impl", impls("lstm_sequence", emulated=True), ids=str)
@settings(max_examples=6)
@given(case=sequence_cases(largest=3))
@example(case=SATURATED)
def test_lstm_sequence_emulated(impl: Impl, case: SequenceCase):
    check_sequence(impl, case)


# ----------------------------------------------------------------------------------------------
# The reference against independent computations of the same function
# ----------------------------------------------------------------------------------------------


def cell_loop(ops: kernels.Ops, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dh_n, dc_n):
    """The sequence as T calls of the rnn family's cell, forward, then back through time
    (what the op replaces). -> (the forward's arrays: hs, h_n, c_n, the gates and tanh(c) of
    every step; the seven gradients)."""
    T = x.shape[0]
    h, c, hs, caches = h0, c0, [], []
    for t in range(T):
        h, c, cache = ops.lstm_cell_forward(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        hs.append(h)
        caches.append(cache)
    hs = np.stack(hs)
    gates = np.stack([cache.gates for cache in caches])
    tanh_c = np.stack([cache.tanh_c_new for cache in caches])
    dxs = [None] * T
    dh, dc = dh_n, dc_n
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros_like(b_ih), np.zeros_like(b_hh)
    for t in range(T - 1, -1, -1):
        dxs[t], dh, dc, g_ih, g_hh, g_b_ih, g_b_hh = ops.lstm_cell_backward(
            dhs[t] + dh, dc, caches[t]
        )
        dw_ih, dw_hh, db_ih, db_hh = dw_ih + g_ih, dw_hh + g_hh, db_ih + g_b_ih, db_hh + g_b_hh
    forward = [hs, h, c, gates, tanh_c]
    return forward, [np.stack(dxs), dh, dc, dw_ih, dw_hh, db_ih, db_hh]


@pytest.mark.parametrize("name", ["numpy", "numba"])
@given(case=sequence_cases())
@settings(max_examples=25)
@example(case=ONE_STEP)
@example(case=SATURATED)
def test_the_sequence_equals_a_loop_of_cells(name: str, case: SequenceCase):
    """float64, each backend against its own cells: the op reorders the matrix products only
    (one over all T*B rows instead of T over B rows), so they agree to rounding."""
    if kernels.why_unavailable(name) is not None:
        pytest.skip(kernels.why_unavailable(name))
    ops = kernels.get(name)
    arrays = case.arrays(np.float64)
    inputs, upstream = arrays[:7], arrays[7:]
    where = f"lstm_sequence [{name}] against its cell loop, {case}"
    hs, h_n, c_n, cache = ops.lstm_sequence_forward(*inputs)
    forward_loop, grads_loop = cell_loop(ops, *inputs, *upstream)
    tol = (1e-12, SCALE_FLOOR)
    assert_all_close(
        [hs, h_n, c_n, cache.gates, cache.tanh_c],
        forward_loop,
        [*OUTPUTS, "cache.gates", "cache.tanh_c"],
        tol,
        f"{where} forward",
    )
    grads = ops.lstm_sequence_backward(*upstream, cache, need_dx=case.need_dx)
    if not case.need_dx:
        assert grads[0] is None, f"{where}: dx computed although need_dx is False"
        grads, grads_loop = grads[1:], grads_loop[1:]
    names = GRADS if case.need_dx else GRADS[1:]
    assert_all_close(list(grads), grads_loop, names, tol, f"{where} backward")


@given(case=sequence_cases(largest=3))
@settings(max_examples=15)
@example(case=ONE_STEP)
def test_reference_backward_is_the_finite_difference_gradient(case: SequenceCase):
    """dy^T J of the forward's three outputs (hs, h_n, c_n), by central differences in
    float64, for every input."""
    arrays = case.arrays(np.float64)
    inputs = [np.ascontiguousarray(a) for a in arrays[:7]]  # perturbed in place
    dhs, dh_n, dc_n = arrays[7:]
    ref = reference()

    def forward(*inputs):
        hs, h_n, c_n, _ = ref.lstm_sequence_forward(*inputs)
        return hs, h_n, c_n

    expected = numerical_vjp(forward, inputs, (dhs, dh_n, dc_n))
    _, _, _, cache = ref.lstm_sequence_forward(*inputs)
    grads = ref.lstm_sequence_backward(dhs, dh_n, dc_n, cache, need_dx=True)
    # The scale floor of the other gradchecks (see test_attention_kernel.py): central
    # differences resolve about 1e-10 here.
    tol = (1e-6, SCALE_FLOOR)
    assert_all_close(list(grads), expected, GRADS, tol, f"finite differences {case}")


def test_reference_equals_torch_lstm():
    """torch.nn.LSTM in float64 with the same weights: hs, h_n, c_n and the gradient of
    L = <dhs, hs> + <dh_n, h_n> + <dc_n, c_n> with respect to every input and parameter."""
    torch = pytest.importorskip("torch")
    case = SequenceCase(T=5, B=3, I=4, H=6, scale=1.5, seed=3)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, dhs, dh_n, dc_n = case.arrays(np.float64)
    ref = reference()
    hs, h_n, c_n, cache = ref.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    grads = ref.lstm_sequence_backward(dhs, dh_n, dc_n, cache, need_dx=True)

    lstm = torch.nn.LSTM(case.I, case.H).double()
    parameters = {
        "weight_ih_l0": w_ih,
        "weight_hh_l0": w_hh,
        "bias_ih_l0": b_ih,
        "bias_hh_l0": b_hh,
    }
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in parameters.items()})
    t_x = torch.tensor(x, requires_grad=True)
    t_h0 = torch.tensor(h0[None], requires_grad=True)  # torch's state is (layers, B, H)
    t_c0 = torch.tensor(c0[None], requires_grad=True)
    t_hs, (t_h_n, t_c_n) = lstm(t_x, (t_h0, t_c0))
    loss = (t_hs * torch.tensor(dhs)).sum()
    loss = loss + (t_h_n[0] * torch.tensor(dh_n)).sum() + (t_c_n[0] * torch.tensor(dc_n)).sum()
    loss.backward()
    expected_grads = [t_x.grad, t_h0.grad[0], t_c0.grad[0]]
    expected_grads += [getattr(lstm, name).grad for name in parameters]
    assert_all_close(
        [hs, h_n, c_n, *grads],
        [t.detach().numpy() for t in (t_hs, t_h_n[0], t_c_n[0], *expected_grads)],
        [*OUTPUTS, *GRADS],
        (1e-12, SCALE_FLOOR),
        "against torch.nn.LSTM",
    )


# ----------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------


def zeros(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


# T = 4 steps, B = 2, I = 3, H = 5: w_ih (20, 3), w_hh (20, 5).
GOOD = [zeros(4, 2, 3), zeros(2, 5), zeros(2, 5), zeros(20, 3), zeros(20, 5), zeros(20), zeros(20)]


def forward_with(**changes) -> list:
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    return [changes.get(name, a) for name, a in zip(names, GOOD, strict=True)]


BAD_FORWARD = [
    (forward_with(x=zeros(2, 3)), "x"),  # one step, not a sequence
    (forward_with(x=zeros(0, 2, 3)), "x"),  # no steps
    (forward_with(x=zeros(4, 2, 4)), "w_ih"),  # I differs
    (forward_with(w_hh=zeros(16, 5)), "w_hh"),  # not 4 gates of H
    (forward_with(h0=zeros(3, 5)), "h0"),  # batch differs
    (forward_with(c0=zeros(2, 4)), "c0"),  # hidden size differs
    (forward_with(b_hh=zeros(19)), "b_hh"),
    (forward_with(b_ih=None), "b_ih"),
    (forward_with(c0=zeros(2, 5, dtype=np.float32)), "c0"),  # mixed dtypes
    (forward_with(x=zeros(4, 2, 3, dtype=np.int64)), "x"),  # not float
]


def _expect_refusal(call, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(argument)}: "):
        call()


def _on(ops: kernels.Ops, arrays):
    """The arrays where `ops` computes (the bad argument itself on the device)."""
    return [ops.xp.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]


@pytest.mark.parametrize("backend", kernels.available())
@pytest.mark.parametrize(("arguments", "argument"), BAD_FORWARD, ids=[r[1] for r in BAD_FORWARD])
def test_the_forward_refuses_bad_input_naming_the_argument(backend, arguments, argument):
    ops = kernels.get(backend)
    _expect_refusal(lambda: ops.lstm_sequence_forward(*_on(ops, arguments)), argument)


@pytest.mark.parametrize("backend", kernels.available())
def test_the_backward_refuses_bad_input_naming_the_argument(backend):
    ops = kernels.get(backend)
    _, _, _, cache = ops.lstm_sequence_forward(*_on(ops, GOOD))
    dhs, dh_n, dc_n = _on(ops, [zeros(4, 2, 5), zeros(2, 5), zeros(2, 5)])
    _, _, cell_cache = ops.lstm_cell_forward(*_on(ops, [zeros(2, 3), *GOOD[1:]]))
    short_dhs, wide_state = _on(ops, [zeros(3, 2, 5), zeros(2, 6)])
    float32_state = _on(ops, [zeros(2, 5, dtype=np.float32)])[0]
    backward = ops.lstm_sequence_backward
    _expect_refusal(lambda: backward(dhs, dh_n, dc_n, cell_cache), "cache")
    _expect_refusal(lambda: backward(short_dhs, dh_n, dc_n, cache), "dhs")
    _expect_refusal(lambda: backward(dhs, wide_state, dc_n, cache), "dh_n")
    _expect_refusal(lambda: backward(dhs, dh_n, float32_state, cache), "dc_n")
    _expect_refusal(lambda: backward(dhs, dh_n, dc_n, cache, need_dx="no"), "need_dx")
    _expect_refusal(lambda: backward(dhs, dh_n, dc_n, cache._replace(gates=dhs)), "cache.gates")
