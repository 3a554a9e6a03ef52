"""The kernel contract: argument validation and output-shape arithmetic, in one place.

Every backend computes the same functions; this module says what those functions accept.
`kernels.get(name)` wraps each backend implementation so that, before any kernel runs,

  * every array argument is checked (rank, shape agreement, dtype float32/float64, one dtype
    for all float inputs, the right kind of array for the backend), and
  * int-or-pair hyper-parameters (``stride``, ``padding``, ``kernel``) are normalised to pairs.

A failure raises ``ValueError`` naming the argument and the shapes involved, because a compiled
kernel does not check bounds: a wrong shape that reached it would read or write past an array.

Backends therefore receive validated arguments with pairs for the hyper-parameters, and can call
the shape arithmetic here (``conv2d_output_size``, ``pool2d_output_size``) instead of
re-deriving it. The cache types of the LSTM and GRU cells (and of the whole-sequence LSTM) live
here too, so that every backend stores the same intermediate values and a test can compare them.

Layouts (PyTorch's):  images NCHW;  conv weight (K, C, R, S);  linear weight (out, in);
LSTM gates stacked i, f, g, o;  GRU gates stacked r, z, n.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Pair = tuple[int, int]


# ----------------------------------------------------------------------------------------------
# Small building blocks
# ----------------------------------------------------------------------------------------------


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(a.shape)


def check_array(name: str, a: Any, ndim: int, array_types: tuple[type, ...]) -> None:
    """Raise ValueError unless `a` is an array of one of `array_types` with rank `ndim`."""
    if not isinstance(a, array_types):
        kinds = " or ".join(t.__module__.split(".")[0] + "." + t.__name__ for t in array_types)
        raise ValueError(
            f"{name}: expected {kinds}, got {type(a).__module__}.{type(a).__name__} "
            "(is the array on the wrong device for this backend?)"
        )
    if len(_shape(a)) != ndim:
        raise ValueError(f"{name}: expected {ndim}-D array, got shape {_shape(a)}")


def check_float_dtypes(**arrays: Any) -> np.dtype:
    """All float inputs must share one dtype, float32 or float64; return it. None is skipped."""
    first_name, dtype = "", None
    for name, a in arrays.items():
        if a is None:
            continue
        if dtype is None:
            first_name, dtype = name, a.dtype
            if dtype not in FLOAT_DTYPES:
                raise ValueError(f"{name}: dtype must be float32 or float64, got {dtype}")
        elif a.dtype != dtype:
            raise ValueError(
                f"{name}: dtype {a.dtype} differs from {first_name}'s {dtype}; "
                "all float inputs must share one dtype"
            )
    if dtype is None:
        raise ValueError(f"no float array among {', '.join(arrays)}: all were None")
    return dtype


def check_shape(name: str, a: Any, expected: tuple[int, ...], why: str | Callable[[], str]) -> None:
    """`why` explains the expected shape; pass a lambda where formatting it would cost time on
    every call (the recurrent cells run these checks once per time step)."""
    if tuple(a.shape) != tuple(expected):
        reason = why() if callable(why) else why
        raise ValueError(f"{name}: expected shape {tuple(expected)} ({reason}), got {_shape(a)}")


def as_pair(name: str, value: Any, minimum: int) -> Pair:
    """Normalise an int or a pair of ints to a pair; each element must be >= `minimum`."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name}: every element must be >= {minimum}, got {value!r}")
    return pair


# ----------------------------------------------------------------------------------------------
# Shape arithmetic shared by every backend
# ----------------------------------------------------------------------------------------------


def conv2d_output_size(H: int, W: int, R: int, S: int, stride: Pair, padding: Pair) -> Pair:
    """Output height and width of a convolution (also of pooling, with R, S the window).

    P = floor((H + 2 * pad_h - R) / stride_h) + 1
    Q = floor((W + 2 * pad_w - S) / stride_w) + 1
    """
    P = (H + 2 * padding[0] - R) // stride[0] + 1
    Q = (W + 2 * padding[1] - S) // stride[1] + 1
    return P, Q


pool2d_output_size = conv2d_output_size


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def conv2d_forward(x, w, b, stride, padding, *, array_types) -> tuple[Pair, Pair]:
    """x (N, C, H, W), w (K, C, R, S), b (K,) or None. Returns (stride, padding) as pairs."""
    check_array("x", x, 4, array_types)
    check_array("w", w, 4, array_types)
    if b is not None:
        check_array("b", b, 1, array_types)
    check_float_dtypes(x=x, w=w, b=b)
    stride = as_pair("stride", stride, 1)
    padding = as_pair("padding", padding, 0)
    N, C, H, W = _shape(x)
    K, Cw, R, S = _shape(w)
    if Cw != C:
        raise ValueError(f"w: has {Cw} input channels but x {_shape(x)} has {C} (w is {_shape(w)})")
    if b is not None:
        check_shape("b", b, (K,), lambda: f"one bias per output channel of w {_shape(w)}")
    _check_window_fits("w", (R, S), (H, W), padding)
    return stride, padding


def conv2d_backward(dy, x, w, stride, padding, *, array_types) -> tuple[Pair, Pair]:
    """dy (N, K, P, Q) must be the shape conv2d_forward(x, w) produced."""
    stride, padding = conv2d_forward(x, w, None, stride, padding, array_types=array_types)
    check_array("dy", dy, 4, array_types)
    check_float_dtypes(dy=dy, x=x, w=w)
    N, _, H, W = _shape(x)
    K, _, R, S = _shape(w)
    P, Q = conv2d_output_size(H, W, R, S, stride, padding)
    check_shape("dy", dy, (N, K, P, Q), lambda: f"the output of x {_shape(x)} conv w {_shape(w)}")
    return stride, padding


def _check_window_fits(name: str, window: Pair, size: Pair, padding: Pair) -> None:
    padded = (size[0] + 2 * padding[0], size[1] + 2 * padding[1])
    if window[0] > padded[0] or window[1] > padded[1]:
        raise ValueError(
            f"{name}: window {window} is larger than the padded input {padded} "
            f"(input {size}, padding {padding}); the output would be empty"
        )


# ----------------------------------------------------------------------------------------------
# Max-pooling
# ----------------------------------------------------------------------------------------------


def _pool_params(kernel, stride, padding) -> tuple[Pair, Pair, Pair]:
    kernel = as_pair("kernel", kernel, 1)
    stride = kernel if stride is None else as_pair("stride", stride, 1)
    padding = as_pair("padding", padding, 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        # A window made only of padding would have no maximum (PyTorch refuses it too).
        raise ValueError(f"padding: must be at most half the kernel {kernel}, got {padding}")
    return kernel, stride, padding


def maxpool2d_forward(x, kernel, stride, padding, *, array_types) -> tuple[Pair, Pair, Pair]:
    """x (N, C, H, W). Returns (kernel, stride, padding) as pairs; stride None means kernel."""
    check_array("x", x, 4, array_types)
    check_float_dtypes(x=x)
    kernel, stride, padding = _pool_params(kernel, stride, padding)
    H, W = _shape(x)[2:]
    _check_window_fits("kernel", kernel, (H, W), padding)
    return kernel, stride, padding


def maxpool2d_backward(
    dy, argmax, x_shape, kernel, stride, padding, *, array_types
) -> tuple[tuple[int, int, int, int], Pair, Pair, Pair]:
    """dy (N, C, P, Q); argmax (N, C, P, Q) integer, flat index into each H*W input plane."""
    check_array("dy", dy, 4, array_types)
    check_float_dtypes(dy=dy)
    check_array("argmax", argmax, 4, array_types)
    if not np.issubdtype(argmax.dtype, np.integer):
        raise ValueError(f"argmax: expected an integer array, got dtype {argmax.dtype}")
    if len(x_shape) != 4 or not all(isinstance(d, (int, np.integer)) for d in x_shape):
        raise ValueError(f"x_shape: expected 4 ints (N, C, H, W), got {x_shape!r}")
    x_shape = tuple(int(d) for d in x_shape)
    kernel, stride, padding = _pool_params(kernel, stride, padding)
    N, C, H, W = x_shape
    _check_window_fits("kernel", kernel, (H, W), padding)
    P, Q = pool2d_output_size(H, W, kernel[0], kernel[1], stride, padding)
    check_shape("dy", dy, (N, C, P, Q), lambda: f"the pooled shape of x_shape {x_shape}")
    check_shape("argmax", argmax, (N, C, P, Q), "same as dy")
    return x_shape, kernel, stride, padding  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Linear
# ----------------------------------------------------------------------------------------------


def linear_forward(x, w, b, *, array_types) -> None:
    """x (N, in), w (out, in), b (out,) or None."""
    check_array("x", x, 2, array_types)
    check_array("w", w, 2, array_types)
    if b is not None:
        check_array("b", b, 1, array_types)
    check_float_dtypes(x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"w: expects {w.shape[1]} input features but x {_shape(x)} has {x.shape[1]}"
        )
    if b is not None:
        check_shape("b", b, (w.shape[0],), lambda: f"one bias per output of w {_shape(w)}")


def linear_backward(dy, x, w, *, array_types) -> None:
    """dy (N, out)."""
    linear_forward(x, w, None, array_types=array_types)
    check_array("dy", dy, 2, array_types)
    check_float_dtypes(dy=dy, x=x)
    check_shape(
        "dy", dy, (x.shape[0], w.shape[0]), lambda: f"x {_shape(x)} times w.T {_shape(w)[::-1]}"
    )


# ----------------------------------------------------------------------------------------------
# Recurrent cells
# ----------------------------------------------------------------------------------------------


class LSTMCache(NamedTuple):
    """What lstm_cell_forward keeps for the backward pass. B = batch, I = input, H = hidden.

    gates holds the activated gates stacked like PyTorch's weights: i, f, g, o -> (B, 4H),
    with i, f, o = sigmoid(.) and g = tanh(.). tanh_c_new = tanh(c_new), (B, H).
    """

    x: Any  # (B, I)
    h: Any  # (B, H)
    c: Any  # (B, H)
    w_ih: Any  # (4H, I)
    w_hh: Any  # (4H, H)
    gates: Any  # (B, 4H)
    tanh_c_new: Any  # (B, H)


class GRUCache(NamedTuple):
    """What gru_cell_forward keeps for the backward pass.

    gates holds r, z, n stacked -> (B, 3H), activated (sigmoid, sigmoid, tanh).
    hn = W_hn h + b_hn, (B, H): the hidden part of the candidate, before r multiplies it
    (the backward of r needs it).
    """

    x: Any  # (B, I)
    h: Any  # (B, H)
    w_ih: Any  # (3H, I)
    w_hh: Any  # (3H, H)
    gates: Any  # (B, 3H)
    hn: Any  # (B, H)


def _check_weights(w_ih, w_hh, b_ih, b_hh, array_types) -> None:
    """The weights of a cell or a sequence: two matrices, and two vectors where given (None:
    a backward pass, which does not take the biases)."""
    check_array("w_ih", w_ih, 2, array_types)
    check_array("w_hh", w_hh, 2, array_types)
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            check_array(name, bias, 1, array_types)


def _cell(x, h, w_ih, w_hh, b_ih, b_hh, n_gates: int, array_types) -> tuple[int, int, int]:
    """Shared shape rules of the three cells; returns (B, I, H). Biases may be None: the
    backward passes do not take them (the forward contracts require them first)."""
    check_array("x", x, 2, array_types)
    check_array("h", h, 2, array_types)
    _check_weights(w_ih, w_hh, b_ih, b_hh, array_types)
    check_float_dtypes(x=x, h=h, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    B, I = _shape(x)
    Hh = h.shape[1]
    G = n_gates

    def gates() -> str:
        return f"{G} gate(s) x hidden {Hh}"

    check_shape("h", h, (B, Hh), lambda: f"batch of x {_shape(x)}")
    check_shape("w_ih", w_ih, (G * Hh, I), lambda: f"{gates()}, input {I}")
    check_shape("w_hh", w_hh, (G * Hh, Hh), lambda: f"{gates()}, hidden {Hh}")
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            check_shape(name, bias, (G * Hh,), gates)
    return B, I, Hh


def _require_biases(b_ih, b_hh) -> None:
    """A cell's forward adds both biases; a layer without them passes zeros (minirad.nn does)."""
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is None:
            raise ValueError(f"{name}: required by the forward pass (pass zeros for no bias)")


def rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, *, array_types) -> None:
    _require_biases(b_ih, b_hh)
    _cell(x, h, w_ih, w_hh, b_ih, b_hh, 1, array_types)


def rnn_tanh_cell_backward(dh_new, x, h, w_ih, w_hh, h_new, *, array_types) -> None:
    _cell(x, h, w_ih, w_hh, None, None, 1, array_types)
    for name, a in (("dh_new", dh_new), ("h_new", h_new)):
        check_array(name, a, 2, array_types)
        check_shape(name, a, _shape(h), "same as h")
    check_float_dtypes(x=x, dh_new=dh_new, h_new=h_new)


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, *, array_types) -> None:
    _require_biases(b_ih, b_hh)
    _cell(x, h, w_ih, w_hh, b_ih, b_hh, 4, array_types)
    check_array("c", c, 2, array_types)
    check_shape("c", c, _shape(h), "same as h")
    check_float_dtypes(x=x, c=c)


def lstm_cell_backward(dh_new, dc_new, cache, *, array_types) -> None:
    if not isinstance(cache, LSTMCache):
        raise ValueError(
            "cache: expected the LSTMCache that lstm_cell_forward returned, "
            f"got {type(cache).__name__}"
        )
    for name, a in (("dh_new", dh_new), ("dc_new", dc_new)):
        check_array(name, a, 2, array_types)
        check_shape(name, a, _shape(cache.h), "same as h of the forward pass")
    check_float_dtypes(**{"cache.x": cache.x, "dh_new": dh_new, "dc_new": dc_new})


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, *, array_types) -> None:
    _require_biases(b_ih, b_hh)
    _cell(x, h, w_ih, w_hh, b_ih, b_hh, 3, array_types)


def gru_cell_backward(dh_new, cache, *, array_types) -> None:
    if not isinstance(cache, GRUCache):
        raise ValueError(
            "cache: expected the GRUCache that gru_cell_forward returned, "
            f"got {type(cache).__name__}"
        )
    check_array("dh_new", dh_new, 2, array_types)
    check_shape("dh_new", dh_new, _shape(cache.h), "same as h of the forward pass")
    check_float_dtypes(**{"cache.x": cache.x, "dh_new": dh_new})


# ----------------------------------------------------------------------------------------------
# LSTM over a whole sequence
# ----------------------------------------------------------------------------------------------


class LSTMSequenceCache(NamedTuple):
    """What lstm_sequence_forward keeps for the backward pass: the LSTMCache of every step,
    stacked along a leading time axis. T = steps, B = batch, I = input, H = hidden.

    h_prev[t] and c_prev[t] are the state step t reads: h0 and c0 for t = 0, then the state
    step t - 1 made (h_prev[t] = hs[t - 1]); the backward's dw_hh pairs step t's da with
    h_prev[t]. gates[t] holds step t's activated gates i, f, g, o stacked like PyTorch's
    weights; tanh_c[t] = tanh of the cell state step t made.
    """

    x: Any  # (T, B, I)
    h_prev: Any  # (T, B, H)
    c_prev: Any  # (T, B, H)
    w_ih: Any  # (4H, I)
    w_hh: Any  # (4H, H)
    gates: Any  # (T, B, 4H)
    tanh_c: Any  # (T, B, H)


def _lstm_sequence(x, w_ih, w_hh, b_ih, b_hh, array_types) -> tuple[int, int, int, int]:
    """Shared shape rules of the sequence ops; returns (T, B, I, H), H read off w_hh (4H, H).
    Biases may be None: the backward does not take them (the forward requires them first)."""
    check_array("x", x, 3, array_types)
    _check_weights(w_ih, w_hh, b_ih, b_hh, array_types)
    check_float_dtypes(x=x, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    T, B, I = _shape(x)
    H = w_hh.shape[1]
    if 0 in (T, B, I, H):
        raise ValueError(
            f"x: every dimension must be non-empty (T steps, B rows, I inputs; H hidden units "
            f"of w_hh), got x {_shape(x)} and w_hh {_shape(w_hh)}"
        )
    check_shape("w_hh", w_hh, (4 * H, H), lambda: f"4 gates x hidden {H}, hidden {H}")
    check_shape("w_ih", w_ih, (4 * H, I), lambda: f"4 gates x hidden {H}, input {I} of x")
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            check_shape(name, bias, (4 * H,), lambda: f"4 gates x hidden {H}")
    return T, B, I, H


def _state(name: str, a: Any, B: int, H: int, array_types) -> None:
    """a (B, H): a state of every row of the batch (h0, c0, dh_n, dc_n)."""
    check_array(name, a, 2, array_types)
    check_shape(name, a, (B, H), lambda: f"batch {B} of x, hidden {H} of w_hh")


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, array_types) -> None:
    """x (T, B, I), h0 and c0 (B, H), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,)."""
    _require_biases(b_ih, b_hh)
    _, B, _, H = _lstm_sequence(x, w_ih, w_hh, b_ih, b_hh, array_types)
    _state("h0", h0, B, H, array_types)
    _state("c0", c0, B, H, array_types)
    check_float_dtypes(x=x, h0=h0, c0=c0)


def lstm_sequence_backward(dhs, dh_n, dc_n, cache, need_dx, *, array_types) -> None:
    """dhs (T, B, H); dh_n, dc_n (B, H); cache the LSTMSequenceCache of the forward pass."""
    if not isinstance(cache, LSTMSequenceCache):
        raise ValueError(
            "cache: expected the LSTMSequenceCache that lstm_sequence_forward returned, "
            f"got {type(cache).__name__}"
        )
    if not isinstance(need_dx, (bool, np.bool_)):
        raise ValueError(f"need_dx: expected True or False, got {need_dx!r}")
    T, B, _, H = _lstm_sequence(cache.x, cache.w_ih, cache.w_hh, None, None, array_types)
    # The compiled passes index the cache's arrays without bounds checks: check them too.
    for name in ("h_prev", "c_prev", "tanh_c", "gates"):
        array = getattr(cache, name)
        check_array(f"cache.{name}", array, 3, array_types)
        width = 4 * H if name == "gates" else H
        check_shape(f"cache.{name}", array, (T, B, width), "steps and batch of cache.x")
    check_array("dhs", dhs, 3, array_types)
    check_shape("dhs", dhs, (T, B, H), lambda: f"one (B, H) gradient per step of x (T={T})")
    _state("dh_n", dh_n, B, H, array_types)
    _state("dc_n", dc_n, B, H, array_types)
    check_float_dtypes(
        **{"cache.x": cache.x, "cache.gates": cache.gates, "dhs": dhs, "dh_n": dh_n, "dc_n": dc_n}
    )


# ----------------------------------------------------------------------------------------------
# Softmax family
# ----------------------------------------------------------------------------------------------


def softmax(x, axis, *, array_types, name: str = "x") -> int:
    """x of any rank >= 1; returns axis normalised to a non-negative int."""
    if not isinstance(x, array_types):
        check_array(name, x, 1, array_types)  # raises the wrong-type message
    if x.ndim == 0:
        raise ValueError(f"{name}: expected an array of rank >= 1, got a 0-d array")
    check_float_dtypes(**{name: x})
    if 0 in _shape(x):
        raise ValueError(f"{name}: has an empty dimension, shape {_shape(x)}")
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: {axis!r} is out of range for {name} of shape {_shape(x)}")
    return int(axis) % x.ndim


log_softmax = softmax


def softmax_backward(dy, y, axis, *, array_types) -> int:
    """dy and y (the forward's output) of one shape; returns axis normalised."""
    axis = softmax(y, axis, array_types=array_types, name="y")
    if not isinstance(dy, array_types):
        check_array("dy", dy, y.ndim, array_types)
    check_shape("dy", dy, _shape(y), "same as y, the forward's output")
    check_float_dtypes(y=y, dy=dy)
    return axis


log_softmax_backward = softmax_backward


def softmax_cross_entropy(logits, targets, ignore_index, *, array_types) -> None:
    """logits (N, V) float; targets (N,) integer class ids in [0, V) or == ignore_index."""
    check_array("logits", logits, 2, array_types)
    check_float_dtypes(logits=logits)
    check_array("targets", targets, 1, array_types)
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets: expected an integer array, got dtype {targets.dtype}")
    N, V = _shape(logits)
    if V == 0 or N == 0:
        raise ValueError(f"logits: has an empty dimension, shape {(N, V)}")
    check_shape("targets", targets, (N,), lambda: f"one class id per row of logits {(N, V)}")
    if not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"ignore_index: expected an int, got {ignore_index!r}")
    if isinstance(targets, np.ndarray):
        # Device targets are not read back to be checked: that would stall the host once per
        # loss. They come from a batch checked on the host (minirad.functional.cross_entropy
        # checks host targets before it uploads them) or from the model's own argmax.
        class_ids("targets", targets, V, ignore_index)


def class_ids(name: str, ids: np.ndarray, V: int, ignore_index: int | np.integer) -> None:
    """Every entry of the host array `ids` is a class id in [0, V) or ignore_index."""
    kept = ids[ids != ignore_index]
    if kept.size and (int(kept.min()) < 0 or int(kept.max()) >= V):
        bad = int(kept.min()) if int(kept.min()) < 0 else int(kept.max())
        raise ValueError(f"{name}: class id {bad} is outside [0, {V}) and is not ignore_index")


# ----------------------------------------------------------------------------------------------
# Additive attention
# ----------------------------------------------------------------------------------------------


def _attention(query, projected_keys, keys, v, array_types) -> tuple[int, int, int, int]:
    """Shared shape rules of the attention ops; returns (B, L, D, A)."""
    check_array("query", query, 2, array_types)
    check_array("projected_keys", projected_keys, 3, array_types)
    check_array("keys", keys, 3, array_types)
    check_array("v", v, 1, array_types)
    check_float_dtypes(query=query, projected_keys=projected_keys, keys=keys, v=v)
    B, L, A = _shape(projected_keys)
    D = keys.shape[2]
    if 0 in (B, L, A, D):
        raise ValueError(
            f"projected_keys {(B, L, A)}, keys {_shape(keys)}: every dimension must be non-empty"
        )
    check_shape("query", query, (B, A), lambda: f"batch and width of projected_keys {(B, L, A)}")
    check_shape("keys", keys, (B, L, D), lambda: f"batch and positions of projected_keys {(B, L)}")
    check_shape("v", v, (A,), lambda: f"width of projected_keys {A}")
    return B, L, D, A


def additive_attention_forward(query, projected_keys, keys, v, *, array_types) -> None:
    """query (B, A), projected_keys (B, L, A), keys (B, L, D), v (A,)."""
    _attention(query, projected_keys, keys, v, array_types)


def additive_attention_backward(dcontext, dalpha, alpha, hidden, keys, v, *, array_types) -> None:
    """dcontext (B, D); dalpha (B, L) or None; alpha (B, L), hidden (B, L, A) from the forward."""
    check_array("hidden", hidden, 3, array_types)
    B, L, A = _shape(hidden)
    _attention(hidden[:, 0, :], hidden, keys, v, array_types)
    D = keys.shape[2]
    check_array("dcontext", dcontext, 2, array_types)
    check_shape("dcontext", dcontext, (B, D), "batch and width of keys")
    check_array("alpha", alpha, 2, array_types)
    check_shape("alpha", alpha, (B, L), "batch and positions of hidden")
    if dalpha is not None:
        check_array("dalpha", dalpha, 2, array_types)
        check_shape("dalpha", dalpha, (B, L), "same as alpha")
    check_float_dtypes(hidden=hidden, dcontext=dcontext, alpha=alpha, dalpha=dalpha)
