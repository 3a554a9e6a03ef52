"""The `Ops` object that `kernels.get(name)` returns: every op of the contract, validated.

A backend (a named way to run: "numpy", "numba", ...; see `kernels.BACKENDS`) is assembled from
one file per op folder (``kernels/<op>/<file>.py``). Each such file declares the versions it
holds and which one is the default::

    VERSIONS = {"naive": {"conv2d_forward": ..., "conv2d_backward": ...},
                "im2col": {"conv2d_forward": ..., "conv2d_backward": ...}}
    DEFAULT_VERSION = "im2col"

(What each version name means, on every backend, is said once, in kernels/__init__.py.)

(The CUDA C host files, shared by two runtimes, build that table with ``make_versions(runtime)``.)

The methods below are the only door into a backend's arithmetic. Each one runs the contract
check from `minirad.kernels._check` (validation and normalisation of int-or-pair arguments),
then calls the chosen version with pairs for ``stride``/``padding``/``kernel``. So the shape
rules exist once, and a kernel never sees an argument the contract has not accepted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from minirad.kernels import _check

# Op folder -> the functions each version in it must provide.
FAMILIES: dict[str, tuple[str, ...]] = {
    "conv2d": ("conv2d_forward", "conv2d_backward"),
    "maxpool2d": ("maxpool2d_forward", "maxpool2d_backward"),
    "linear": ("linear_forward", "linear_backward"),
    "rnn": (
        "rnn_tanh_cell_forward",
        "rnn_tanh_cell_backward",
        "lstm_cell_forward",
        "lstm_cell_backward",
        "gru_cell_forward",
        "gru_cell_backward",
    ),
    "softmax": (
        "softmax",
        "softmax_backward",
        "log_softmax",
        "log_softmax_backward",
        "softmax_cross_entropy",
    ),
    "attention": ("additive_attention_forward", "additive_attention_backward"),
    "lstm_sequence": ("lstm_sequence_forward", "lstm_sequence_backward"),
}

Array = Any  # numpy.ndarray on the CPU backends, a device array on the GPU ones


class Ops:
    """Every op of the kernel contract for one backend, with one chosen version per op folder.

    Attributes:
        name: the backend's registry name ("numpy", "numba", ...).
        versions: op folder -> the names of all versions that backend holds.
        version: op folder -> the version this object uses.
    """

    def __init__(
        self,
        name: str,
        tables: dict[str, tuple[dict[str, dict[str, Callable[..., Any]]], str]],
        array_types: tuple[type, ...],
        chosen: dict[str, str],
    ) -> None:
        """tables: op folder -> (its VERSIONS table, its DEFAULT_VERSION)."""
        self.name = name
        self.array_types = array_types
        self.versions = {family: tuple(versions) for family, (versions, _) in tables.items()}
        self.version: dict[str, str] = {}
        self._impl: dict[str, Callable[..., Any]] = {}
        for family, (versions, default) in tables.items():
            version = chosen.get(family, default)
            if version not in versions:
                raise ValueError(
                    f"{family}: backend {name!r} has no version {version!r}; "
                    f"choose one of {sorted(versions)}"
                )
            self.version[family] = version
            for op in FAMILIES[family]:
                self._impl[op] = versions[version][op]

    @property
    def xp(self) -> ModuleType:
        """The array module of this backend's arrays: numpy on the CPU backends, cupy (or the
        test suite's stand-in for it) on the GPU ones. A device array's module is the package
        its class comes from, so numpy is never mistaken for it."""
        array_type = self.array_types[0]
        return importlib.import_module(array_type.__module__.split(".")[0])

    @property
    def on_device(self) -> bool:
        """True where this backend computes on device arrays (not numpy.ndarray)."""
        return np.ndarray not in self.array_types

    def __repr__(self) -> str:
        chosen = ", ".join(f"{family}={v}" for family, v in self.version.items())
        return f"<kernels.Ops of backend {self.name!r}: {chosen}>"

    # -- convolution ---------------------------------------------------------------------------

    def conv2d_forward(self, x: Array, w: Array, b: Array | None, stride=1, padding=0) -> Array:
        """y[n,k,p,q] = b[k] + sum_{c,r,s} x_pad[n, c, p*sh + r, q*sw + s] * w[k,c,r,s].

        x (N, C, H, W), w (K, C, R, S), b (K,) or None -> y (N, K, P, Q).
        """
        stride, padding = _check.conv2d_forward(
            x, w, b, stride, padding, array_types=self.array_types
        )
        return self._impl["conv2d_forward"](x, w, b, stride, padding)

    def conv2d_backward(
        self, dy: Array, x: Array, w: Array, stride=1, padding=0
    ) -> tuple[Array, Array, Array]:
        """dy (N, K, P, Q) -> dx (N, C, H, W), dw (K, C, R, S), db (K,)."""
        stride, padding = _check.conv2d_backward(
            dy, x, w, stride, padding, array_types=self.array_types
        )
        return self._impl["conv2d_backward"](dy, x, w, stride, padding)

    # -- max-pooling ---------------------------------------------------------------------------

    def maxpool2d_forward(self, x: Array, kernel=2, stride=None, padding=0) -> tuple[Array, Array]:
        """y[n,c,p,q] = max over the window; argmax = flat index (into H*W) of that maximum.

        x (N, C, H, W) -> y (N, C, P, Q), argmax (N, C, P, Q) int64. stride None = kernel.
        """
        kernel, stride, padding = _check.maxpool2d_forward(
            x, kernel, stride, padding, array_types=self.array_types
        )
        return self._impl["maxpool2d_forward"](x, kernel, stride, padding)

    def maxpool2d_backward(
        self, dy: Array, argmax: Array, x_shape: tuple[int, ...], kernel=2, stride=None, padding=0
    ) -> Array:
        """dx[n, c, argmax[n,c,p,q]] += dy[n,c,p,q]  -> dx of shape x_shape."""
        x_shape, kernel, stride, padding = _check.maxpool2d_backward(
            dy, argmax, x_shape, kernel, stride, padding, array_types=self.array_types
        )
        return self._impl["maxpool2d_backward"](dy, argmax, x_shape, kernel, stride, padding)

    # -- linear --------------------------------------------------------------------------------

    def linear_forward(self, x: Array, w: Array, b: Array | None) -> Array:
        """y = x @ w.T + b.   x (N, in), w (out, in), b (out,) or None -> y (N, out)."""
        _check.linear_forward(x, w, b, array_types=self.array_types)
        return self._impl["linear_forward"](x, w, b)

    def linear_backward(self, dy: Array, x: Array, w: Array) -> tuple[Array, Array, Array]:
        """dx = dy @ w,  dw = dy.T @ x,  db = sum_n dy.   dy (N, out)."""
        _check.linear_backward(dy, x, w, array_types=self.array_types)
        return self._impl["linear_backward"](dy, x, w)

    # -- recurrent cells -----------------------------------------------------------------------

    def rnn_tanh_cell_forward(self, x, h, w_ih, w_hh, b_ih, b_hh) -> Array:
        """h_new = tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).   x (B, I), h (B, H)."""
        _check.rnn_tanh_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, array_types=self.array_types)
        return self._impl["rnn_tanh_cell_forward"](x, h, w_ih, w_hh, b_ih, b_hh)

    def rnn_tanh_cell_backward(self, dh_new, x, h, w_ih, w_hh, h_new) -> tuple[Array, ...]:
        """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
        _check.rnn_tanh_cell_backward(dh_new, x, h, w_ih, w_hh, h_new, array_types=self.array_types)
        return self._impl["rnn_tanh_cell_backward"](dh_new, x, h, w_ih, w_hh, h_new)

    def lstm_cell_forward(self, x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[Array, Array, Any]:
        """LSTM step, PyTorch gate order i, f, g, o.  -> (h_new, c_new, cache)."""
        _check.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, array_types=self.array_types)
        return self._impl["lstm_cell_forward"](x, h, c, w_ih, w_hh, b_ih, b_hh)

    def lstm_cell_backward(self, dh_new, dc_new, cache) -> tuple[Array, ...]:
        """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)."""
        _check.lstm_cell_backward(dh_new, dc_new, cache, array_types=self.array_types)
        return self._impl["lstm_cell_backward"](dh_new, dc_new, cache)

    def gru_cell_forward(self, x, h, w_ih, w_hh, b_ih, b_hh) -> tuple[Array, Any]:
        """GRU step, PyTorch gate order r, z, n.  -> (h_new, cache)."""
        _check.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, array_types=self.array_types)
        return self._impl["gru_cell_forward"](x, h, w_ih, w_hh, b_ih, b_hh)

    def gru_cell_backward(self, dh_new, cache) -> tuple[Array, ...]:
        """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
        _check.gru_cell_backward(dh_new, cache, array_types=self.array_types)
        return self._impl["gru_cell_backward"](dh_new, cache)

    # -- softmax family ------------------------------------------------------------------------

    def softmax(self, x: Array, axis: int = -1) -> Array:
        """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x), along `axis`."""
        axis = _check.softmax(x, axis, array_types=self.array_types)
        return self._impl["softmax"](x, axis)

    def softmax_backward(self, dy: Array, y: Array, axis: int = -1) -> Array:
        """dx = y * (dy - sum(dy * y, axis)), with y = softmax(x) (Jacobian-vector product)."""
        axis = _check.softmax_backward(dy, y, axis, array_types=self.array_types)
        return self._impl["softmax_backward"](dy, y, axis)

    def log_softmax(self, x: Array, axis: int = -1) -> Array:
        """log_softmax(x)_i = x_i - max x - log sum_j exp(x_j - max x), along `axis`."""
        axis = _check.log_softmax(x, axis, array_types=self.array_types)
        return self._impl["log_softmax"](x, axis)

    def log_softmax_backward(self, dy: Array, y: Array, axis: int = -1) -> Array:
        """dx = dy - exp(y) * sum(dy, axis), with y = log_softmax(x)."""
        axis = _check.log_softmax_backward(dy, y, axis, array_types=self.array_types)
        return self._impl["log_softmax_backward"](dy, y, axis)

    def softmax_cross_entropy(
        self, logits: Array, targets: Array, ignore_index: int = -100
    ) -> tuple[Array, Array]:
        """Mean of -log softmax(logits)[n, targets[n]] over rows whose target != ignore_index.

        logits (N, V), targets (N,) int -> (loss as a 0-d array, dlogits (N, V)).
        dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) / M for the M kept rows, 0 for
        ignored rows. If every row is ignored the loss is 0 and dlogits is 0 (PyTorch gives nan).
        """
        _check.softmax_cross_entropy(logits, targets, ignore_index, array_types=self.array_types)
        return self._impl["softmax_cross_entropy"](logits, targets, int(ignore_index))

    # -- additive attention --------------------------------------------------------------------

    def additive_attention_forward(
        self, query: Array, projected_keys: Array, keys: Array, v: Array
    ) -> tuple[Array, Array, Array]:
        """hidden = tanh(projected_keys + query[:, None]), alpha = softmax_l(hidden @ v),
        context = sum_l alpha[:, l, None] keys[:, l].

        query (B, A), projected_keys (B, L, A), keys (B, L, D), v (A,)
        -> (context (B, D), alpha (B, L), hidden (B, L, A), which the backward needs).
        """
        _check.additive_attention_forward(
            query, projected_keys, keys, v, array_types=self.array_types
        )
        return self._impl["additive_attention_forward"](query, projected_keys, keys, v)

    def additive_attention_backward(
        self,
        dcontext: Array,
        dalpha: Array | None,
        alpha: Array,
        hidden: Array,
        keys: Array,
        v: Array,
    ) -> tuple[Array, Array, Array, Array]:
        """dcontext (B, D), dalpha (B, L) or None (alpha used only for the context)
        -> (dquery (B, A), dprojected_keys (B, L, A), dkeys (B, L, D), dv (A,))."""
        _check.additive_attention_backward(
            dcontext, dalpha, alpha, hidden, keys, v, array_types=self.array_types
        )
        return self._impl["additive_attention_backward"](dcontext, dalpha, alpha, hidden, keys, v)

    # -- LSTM over a whole sequence ------------------------------------------------------------

    def lstm_sequence_forward(
        self, x: Array, h0: Array, c0: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array
    ) -> tuple[Array, Array, Array, Any]:
        """lstm_cell_forward at every step t = 0 .. T-1, from the state (h0, c0); x w_ih^T is
        one product over all T*B rows (it does not depend on the recurrence).

        x (T, B, I), h0 and c0 (B, H), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,)
        -> (hs (T, B, H) every step's h, h_n and c_n (B, H) the last state, cache).
        """
        _check.lstm_sequence_forward(
            x, h0, c0, w_ih, w_hh, b_ih, b_hh, array_types=self.array_types
        )
        return self._impl["lstm_sequence_forward"](x, h0, c0, w_ih, w_hh, b_ih, b_hh)

    def lstm_sequence_backward(
        self, dhs: Array, dh_n: Array, dc_n: Array, cache: Any, need_dx: bool = True
    ) -> tuple[Array | None, ...]:
        """Backward through time: lstm_cell_backward at t = T-1 .. 0, carrying dh and dc, with
        dh_t = dhs[t] + the dh carried back from step t + 1; then dw_ih = DA^T x and
        dw_hh = DA^T h_prev, one product each over all T*B rows of DA (T, B, 4H), every step's
        gate gradient.

        dhs (T, B, H) = dL/dhs, dh_n and dc_n (B, H) = dL/d(h_n, c_n) (zeros if unused)
        -> (dx (T, B, I), or None if not need_dx, dh0 (B, H), dc0 (B, H), dw_ih (4H, I),
        dw_hh (4H, H), db_ih (4H,), db_hh (4H,)).
        """
        _check.lstm_sequence_backward(dhs, dh_n, dc_n, cache, need_dx, array_types=self.array_types)
        return self._impl["lstm_sequence_backward"](dhs, dh_n, dc_n, cache, bool(need_dx))
