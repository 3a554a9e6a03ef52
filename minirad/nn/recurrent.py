"""Recurrent layers: cells (RNNCell, LSTMCell, GRUCell) and sequence layers (RNN, LSTM, GRU).

A cell computes one time step with one kernel-backed Function of `minirad.functional`; the
formulas and the gate order (LSTM: i, f, g, o; GRU: r, z, n) are those of kernels/rnn and of
PyTorch. Shapes, with B = batch, I = input_size, H = hidden_size and G gates (1, 4 or 3):

    weight_ih (G*H, I)    weight_hh (G*H, H)    bias_ih (G*H,)    bias_hh (G*H,)
    every entry drawn from U(-1/sqrt(H), +1/sqrt(H)), PyTorch's default.

A sequence layer holds the same four parameters, named with PyTorch's layer suffix
(`weight_ih_l0`, ...). RNN and GRU run the cell Function once per time step. Nothing special is
needed for backpropagation through time: each step is recorded on the tape, and backward()
walks the steps in reverse, adding the gradient that reaches h_t from step t+1 to the one from
the output. LSTM runs its whole sequence as one Function instead (functional.lstm_sequence, on
kernels/lstm_sequence): the same cell at every step, forward and back through time inside the
op, with the products that do not carry the recurrence (the input's, the weights' gradients)
taken once for all steps; that is what torch.nn.LSTM does too.
"""

from __future__ import annotations

import math

import numpy as np

from minirad import functional as F
from minirad.autograd import Function, Tensor, array_module, stack
from minirad.nn.layers import Seed, as_generator, uniform
from minirad.nn.module import Module, Parameter

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _add_cell_parameters(module, kind, input_size, hidden_size, bias, rng, dtype, suffix=""):
    """Register weight_ih{suffix}, weight_hh{suffix} (and the biases) on module, torch's order."""
    G, bound = GATES[kind], 1 / math.sqrt(hidden_size)
    rng = as_generator(rng)
    setattr(module, f"weight_ih{suffix}", uniform((G * hidden_size, input_size), bound, rng, dtype))
    setattr(
        module, f"weight_hh{suffix}", uniform((G * hidden_size, hidden_size), bound, rng, dtype)
    )
    if bias:
        setattr(module, f"bias_ih{suffix}", uniform((G * hidden_size,), bound, rng, dtype))
        setattr(module, f"bias_hh{suffix}", uniform((G * hidden_size,), bound, rng, dtype))


def _biases(w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """A layer built with bias=False passes None for the biases; the kernels take arrays, so
    zeros (constants, never trained) stand in for them."""
    if b_ih is None or b_hh is None:
        xp = array_module(w_ih.data)
        zeros = Tensor(xp.zeros(w_ih.shape[0], dtype=w_ih.dtype))
        return zeros, zeros
    return b_ih, b_hh


def _step(kind, x, state, w_ih, w_hh, b_ih, b_hh):
    """One time step of cell `kind`. x (B, I); state h (B, H), or (h, c) for the LSTM.

    Returns the new state, shaped like `state`. Biases may be None (bias=False: see _biases).
    """
    b_ih, b_hh = _biases(w_ih, b_ih, b_hh)
    if kind == "lstm":
        h, c = state
        return F.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
    if kind == "gru":
        return F.gru_cell(x, state, w_ih, w_hh, b_ih, b_hh)
    return F.rnn_tanh_cell(x, state, w_ih, w_hh, b_ih, b_hh)


def _zeros(x: Tensor, B: int, H: int) -> Tensor:
    """A zero state (B, H) on x's device, in x's dtype: the default initial h (and c)."""
    return Tensor(array_module(x.data).zeros((B, H), dtype=x.dtype))


# ----------------------------------------------------------------------------------------------
# Cells: one time step
# ----------------------------------------------------------------------------------------------


class _Cell(Module):
    """What the three cells share; a subclass names its kind ("rnn", "lstm" or "gru")."""

    kind = ""
    # Registered by _add_cell_parameters under torch's names (declared here for readers and
    # type checkers).
    weight_ih: Parameter
    weight_hh: Parameter
    bias_ih: Parameter | None
    bias_hh: Parameter | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias_ih = self.bias_hh = None  # replaced by Parameters when bias=True
        _add_cell_parameters(self, self.kind, input_size, hidden_size, bias, rng, dtype)

    def forward(self, x: Tensor, state=None):
        if state is None:
            B, H = x.shape[0], self.hidden_size
            state = (_zeros(x, B, H), _zeros(x, B, H)) if self.kind == "lstm" else _zeros(x, B, H)
        return _step(
            self.kind, x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        )


class RNNCell(_Cell):
    """h_new (B, H) = tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).

    forward(x (B, I), h (B, H) or None for zeros) -> h_new (B, H).
    """

    kind = "rnn"


class LSTMCell(_Cell):
    """[i, f, g, o] = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh   (each (B, H))
    c_new = sigmoid(f) * c + sigmoid(i) * tanh(g);   h_new = sigmoid(o) * tanh(c_new).

    forward(x (B, I), (h, c) each (B, H), or None for zeros) -> (h_new, c_new).
    """

    kind = "lstm"


class GRUCell(_Cell):
    """r = sigmoid(x W_ir + b_ir + h W_hr + b_hr),  z = sigmoid(x W_iz + b_iz + h W_hz + b_hz),
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),   h_new = (1 - z) * n + z * h.

    (W_ir, W_iz, W_in are the three row blocks of weight_ih, transposed; likewise for _hh.)
    forward(x (B, I), h (B, H) or None for zeros) -> h_new (B, H).
    """

    kind = "gru"


# ----------------------------------------------------------------------------------------------
# Sequence layers: the cell unrolled over time
# ----------------------------------------------------------------------------------------------


class Unstack(Function):
    """x -> the slices x.take(t, axis) for every t (the inverse of autograd.stack).

    One Function with T outputs rather than T indexing operations: the backward of x[t] alone
    would allocate a zero array as large as all of x for every step, T times over.
    """

    def forward(self, x, axis=0):
        self.axis = axis
        xp = array_module(x)
        # Contiguous slices: the compiled cell kernels are fastest on plain row-major arrays.
        return tuple(xp.ascontiguousarray(s) for s in xp.moveaxis(x, axis, 0))

    def backward(self, *grads):
        return array_module(grads[0]).stack(grads, axis=self.axis)


def unstack(x: Tensor, axis: int = 0) -> tuple[Tensor, ...]:
    outputs = Unstack.apply(x, axis=axis)
    return outputs if isinstance(outputs, tuple) else (outputs,)


class _Recurrent(Module):
    """What the three sequence layers share: one layer, its cell Function unrolled over time
    (LSTM overrides forward: its whole sequence is one Function)."""

    kind = ""
    # Registered by _add_cell_parameters under torch's names (declared here for readers and
    # type checkers).
    weight_ih_l0: Parameter
    weight_hh_l0: Parameter
    bias_ih_l0: Parameter | None
    bias_hh_l0: Parameter | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        batch_first: bool = False,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        self.bias_ih_l0 = self.bias_hh_l0 = None  # replaced by Parameters when bias=True
        _add_cell_parameters(self, self.kind, input_size, hidden_size, bias, rng, dtype, "_l0")

    @property
    def _time_axis(self) -> int:
        return 1 if self.batch_first else 0

    def _check_sequence(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[self._time_axis] == 0 or x.shape[2] != self.input_size:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(
                f"x: expected a non-empty sequence {layout} with I = {self.input_size}, "
                f"got shape {x.shape}"
            )

    def _initial(self, x: Tensor, h0: Tensor | None, name: str) -> Tensor:
        """h0 (1, B, H) -> (B, H) for the cell (a reshape on the tape, so h0 gets its gradient).
        x is the sequence, (T, B, I) or (B, T, I)."""
        B, H = x.shape[1 - self._time_axis], self.hidden_size
        if h0 is None:
            return _zeros(x, B, H)
        if h0.shape != (1, B, H):
            raise ValueError(
                f"{name}: expected shape (1, {B}, {H}) (layers, batch, hidden), got {h0.shape}"
            )
        return h0.reshape(B, H)

    def forward(self, x: Tensor, state=None):
        """The cell Function once per step (RNN and GRU: h is the whole state)."""
        self._check_sequence(x)
        h = self._initial(x, state, "h0")
        steps = unstack(x, axis=self._time_axis)  # T tensors (B, I)
        weights = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        outputs = []
        for x_t in steps:
            h = _step(self.kind, x_t, h, *weights)
            outputs.append(h)
        output = stack(outputs, axis=self._time_axis)  # (T, B, H) or (B, T, H)
        B, H = h.shape
        return output, h.reshape(1, B, H)


class RNN(_Recurrent):
    """A tanh-RNN over a sequence: h_t = tanh(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh).

    forward(x (T, B, I) or (B, T, I) if batch_first, h0 (1, B, H) or None)
        -> (output: every h_t, (T, B, H) or (B, T, H);  h_n: the last h_t, (1, B, H)).
    """

    kind = "rnn"


class LSTM(_Recurrent):
    """An LSTM over a sequence (the LSTMCell formulas at every step), run as one Function on
    the whole sequence (functional.lstm_sequence): forward and backward through time each
    happen inside one kernel call, and the gradient of x is computed only when x needs one.

    forward(x (T, B, I) or (B, T, I) if batch_first, (h0, c0) each (1, B, H), or None)
        -> (output (T, B, H) or (B, T, H), (h_n, c_n) each (1, B, H)).
    """

    kind = "lstm"

    def forward(self, x: Tensor, state=None):
        self._check_sequence(x)
        h0, c0 = state if state is not None else (None, None)
        h0, c0 = self._initial(x, h0, "h0"), self._initial(x, c0, "c0")
        # The op takes the time-major layout (T, B, I); batch_first is a transpose either side.
        time_major = x.transpose(1, 0, 2) if self.batch_first else x
        b_ih, b_hh = _biases(self.weight_ih_l0, self.bias_ih_l0, self.bias_hh_l0)
        hs, h_n, c_n = F.lstm_sequence(
            time_major, h0, c0, self.weight_ih_l0, self.weight_hh_l0, b_ih, b_hh
        )
        output = hs.transpose(1, 0, 2) if self.batch_first else hs
        B, H = h_n.shape
        return output, (h_n.reshape(1, B, H), c_n.reshape(1, B, H))


class GRU(_Recurrent):
    """A GRU over a sequence (the GRUCell formulas at every step).

    forward(x (T, B, I) or (B, T, I) if batch_first, h0 (1, B, H) or None)
        -> (output (T, B, H) or (B, T, H), h_n (1, B, H)).
    """

    kind = "gru"
