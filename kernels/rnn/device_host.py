"""Host code of the recurrent cells on a GPU, written once for the Numba CUDA and CUDA C backends.

Shapes:  x (B, I)   h, c, h_new, c_new (B, H)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)
         G = 1 (tanh-RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), PyTorch's layout.

Each cell step is

    gi = x @ w_ih.T,  gh = h @ w_hh.T     the GEMMs (kernels/linear), w read transposed, no copy
    gate math -> h_new (c_new, cache)      the cell's elementwise kernels

and its backward

    gate math in reverse -> da_x, da_h (B, G*H)                          elementwise kernels
    dx = da_x @ w_ih,  dh = da_h @ w_hh,  dw_ih = da_x.T @ x,  dw_hh = da_h.T @ h    the GEMMs
    db_ih, db_hh = column sums of da_x, da_h

Versions (what each kernel computes is in numba_cuda.py and rnn.cu):
    naive  the naive matmul, add_bias, and a chain of small elementwise kernels, one per
           intermediate array (3 to 4 launches of gate math per direction).
    fused  the tiled matmul and ONE gate kernel per cell and direction, biases folded in.
    (The GRU's backward adds the direct path dh_new * z to dh after the GEMM, in both.)

The two backends hold kernels of the same names and the same arithmetic: numba_cuda.py's are
Python functions compiled by Numba, rnn.cu's are CUDA C. Only launching differs, so a backend
describes it in a `CellDevice` and `make_versions(device)` builds its VERSIONS table:

    launch(kernel, n, arrays, B, H)   run `kernel` with one thread per item, n items, on
                                      `arrays`. rnn.cu's kernels also take the sizes B and H;
                                      Numba's read them off the arrays' shapes.
    sum_activate(gi, gh, gates, cols, H, tanh_gate)
                                      the one kernel with more parameters: it activates the first
                                      `cols` columns of gi + gh, gate number `tanh_gate` by tanh
                                      and the others by sigma (its arguments differ by backend).
    check_sizes(**sizes)              refuse arrays the kernels cannot index (name -> elements),
                                      called first, before anything is copied or allocated:
                                      rnn.cu and linear.cu index with 32-bit int
                                      (grids.check_int_indices); Numba with 64-bit integers, so
                                      the Numba CUDA backend keeps the default, `any_size`.

Every array handed to a kernel is C-contiguous: the kernels index flat buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from minirad.kernels._check import GRUCache, LSTMCache

Array = Any  # numpy.ndarray in the emulators, a cupy.ndarray on a GPU

NO_TANH_GATE = -1  # for sum_activate: every gate of the range is a sigmoid
LSTM_TANH_GATE = 2  # i, f, g, o: g is the tanh gate


def any_size(**sizes: int) -> None:
    """CellDevice.check_sizes of a backend whose kernels index with 64-bit integers."""


@dataclass(frozen=True)
class CellDevice:
    """What the cells' host code needs from one GPU backend."""

    xp: ModuleType  # the array module: cupy on a GPU, numpy in the emulators
    # matmul(a, b, version) -> a @ b; a and b are C-contiguous or the .T of a C-contiguous array
    matmul: Callable[[Array, Array, str], Array]
    add_bias: Callable[[Array, Array], None]  # y += b on every row, in place
    column_sums: Callable[[Array], Array]  # dy (R, C) -> (C,)
    launch: Callable[[str, int, tuple, int, int], None]  # see the top
    sum_activate: Callable[[Array, Array, Array, int, int, int], None]  # see the top
    check_sizes: Callable[..., None] = any_size  # see the top


def make_versions(device: CellDevice) -> dict[str, dict[str, Callable[..., Any]]]:
    """The VERSIONS table of one backend: every cell op, naive and fused."""
    return {"naive": Cells(device, fused=False).ops(), "fused": Cells(device, fused=True).ops()}


class Cells:
    """The six cell ops of one version on one device."""

    def __init__(self, device: CellDevice, fused: bool) -> None:
        self.device = device
        self.fused = fused
        self.gemm = "tiled" if fused else "naive"  # the matmul version each version uses

    def ops(self) -> dict[str, Callable[..., Any]]:
        return {
            "rnn_tanh_cell_forward": self.rnn_tanh_cell_forward,
            "rnn_tanh_cell_backward": self.rnn_tanh_cell_backward,
            "lstm_cell_forward": self.lstm_cell_forward,
            "lstm_cell_backward": self.lstm_cell_backward,
            "gru_cell_forward": self.gru_cell_forward,
            "gru_cell_backward": self.gru_cell_backward,
        }

    # -- helpers -----------------------------------------------------------------------------

    def check_sizes(self, x: Array, h: Array, w_ih: Array) -> None:
        """Let the device refuse a cell it cannot index: x (B, I), h (B, H), w_ih (G*H, I);
        the gates, pre-activations and their gradients are (B, G*H)."""
        (B, I), H, GH = x.shape, h.shape[1], w_ih.shape[0]
        self.device.check_sizes(x=B * I, h=B * H, w_ih=GH * I, w_hh=GH * H, gates=B * GH)

    def contiguous(self, *arrays: Array) -> tuple[Array, ...]:
        return tuple(self.device.xp.ascontiguousarray(a) for a in arrays)

    def empty(self, shape: tuple[int, ...], like: Array) -> Array:
        return self.device.xp.empty(shape, dtype=like.dtype)

    def per_unit(self, kernel: str, arrays: tuple, B: int, H: int) -> None:
        """Launch `kernel` with one thread per hidden unit (b, j): B * H threads."""
        self.device.launch(kernel, B * H, arrays, B, H)

    def pre_activations(self, x, h, w_ih, w_hh, b_ih, b_hh) -> tuple[Array, Array]:
        """(gi, gh) = (x @ w_ih.T, h @ w_hh.T), the biases added only by the naive version
        (the fused kernels add them as they read gi and gh)."""
        matmul = self.device.matmul
        gi, gh = matmul(x, w_ih.T, self.gemm), matmul(h, w_hh.T, self.gemm)
        if not self.fused:
            self.device.add_bias(gi, b_ih)
            self.device.add_bias(gh, b_hh)
        return gi, gh

    def weight_grads(self, da_x, da_h, x, h, w_ih, w_hh) -> tuple[Array, ...]:
        """The matrix half of every backward -> dx, dh, dw_ih, dw_hh, db_ih, db_hh."""
        matmul, column_sums = self.device.matmul, self.device.column_sums
        dx = matmul(da_x, w_ih, self.gemm)
        dh = matmul(da_h, w_hh, self.gemm)
        dw_ih = matmul(da_x.T, x, self.gemm)  # (G*H, B) @ (B, I): the transpose is a view
        dw_hh = matmul(da_h.T, h, self.gemm)
        db_ih = column_sums(da_x)
        # tanh-RNN and LSTM pass one da for both sides: sum it once, return two arrays.
        db_hh = db_ih.copy() if da_h is da_x else column_sums(da_h)
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh

    # -- tanh-RNN ----------------------------------------------------------------------------

    def rnn_tanh_cell_forward(self, x, h, w_ih, w_hh, b_ih, b_hh) -> Array:
        self.check_sizes(x, h, w_ih)
        x, h, w_ih, w_hh, b_ih, b_hh = self.contiguous(x, h, w_ih, w_hh, b_ih, b_hh)
        B, H = h.shape
        gi, gh = self.pre_activations(x, h, w_ih, w_hh, b_ih, b_hh)
        h_new = self.empty((B, H), x)
        if self.fused:
            self.per_unit("rnn_forward_fused", (gi, gh, b_ih, b_hh, h_new), B, H)
        else:  # all H columns, one gate (number 0), and it is a tanh
            self.device.sum_activate(gi, gh, h_new, H, H, 0)
        return h_new

    def rnn_tanh_cell_backward(self, dh_new, x, h, w_ih, w_hh, h_new) -> tuple[Array, ...]:
        self.check_sizes(x, h, w_ih)
        dh_new, x, h, w_ih, w_hh, h_new = self.contiguous(dh_new, x, h, w_ih, w_hh, h_new)
        B, H = h.shape
        da = self.empty((B, H), x)
        self.per_unit("rnn_backward", (dh_new, h_new, da), B, H)
        return self.weight_grads(da, da, x, h, w_ih, w_hh)

    # -- LSTM --------------------------------------------------------------------------------

    def lstm_cell_forward(self, x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[Array, Array, LSTMCache]:
        self.check_sizes(x, h, w_ih)
        x, h, c, w_ih, w_hh, b_ih, b_hh = self.contiguous(x, h, c, w_ih, w_hh, b_ih, b_hh)
        B, H = h.shape
        gi, gh = self.pre_activations(x, h, w_ih, w_hh, b_ih, b_hh)
        gates = self.empty((B, 4 * H), x)
        c_new, tanh_c_new, h_new = (self.empty((B, H), x) for _ in range(3))
        if self.fused:
            state = (c, gates, c_new, tanh_c_new, h_new)
            self.per_unit("lstm_forward_fused", (gi, gh, b_ih, b_hh, *state), B, H)
        else:
            self.device.sum_activate(gi, gh, gates, 4 * H, H, LSTM_TANH_GATE)
            self.per_unit("lstm_state", (gates, c, c_new, tanh_c_new, h_new), B, H)
        return h_new, c_new, LSTMCache(x, h, c, w_ih, w_hh, gates, tanh_c_new)

    def lstm_cell_backward(self, dh_new, dc_new, cache: LSTMCache) -> tuple[Array, ...]:
        self.check_sizes(cache.x, cache.h, cache.w_ih)
        dh_new, dc_new = self.contiguous(dh_new, dc_new)
        x, h, c, w_ih, w_hh, gates, tanh_c_new = self.contiguous(*cache)
        B, H = h.shape
        da, dc = self.empty((B, 4 * H), x), self.empty((B, H), x)
        if self.fused:
            self.per_unit(
                "lstm_backward_fused", (dh_new, dc_new, c, gates, tanh_c_new, da, dc), B, H
            )
        else:
            dc_total = self.empty((B, H), x)
            self.per_unit("lstm_dc_total", (dh_new, dc_new, gates, tanh_c_new, dc_total), B, H)
            grads_in = (dc_total, dh_new, c, gates, tanh_c_new, da)
            self.device.launch("lstm_gate_grads", B * 4 * H, grads_in, B, H)  # one per gate
            self.per_unit("lstm_dc", (dc_total, gates, dc), B, H)
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = self.weight_grads(da, da, x, h, w_ih, w_hh)
        return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh

    # -- GRU ---------------------------------------------------------------------------------

    def gru_cell_forward(self, x, h, w_ih, w_hh, b_ih, b_hh) -> tuple[Array, GRUCache]:
        self.check_sizes(x, h, w_ih)
        x, h, w_ih, w_hh, b_ih, b_hh = self.contiguous(x, h, w_ih, w_hh, b_ih, b_hh)
        B, H = h.shape
        gi, gh = self.pre_activations(x, h, w_ih, w_hh, b_ih, b_hh)
        gates, h_new = self.empty((B, 3 * H), x), self.empty((B, H), x)
        if self.fused:
            hn = self.empty((B, H), x)
            self.per_unit("gru_forward_fused", (gi, gh, b_ih, b_hh, h, gates, hn, h_new), B, H)
        else:
            # r and z (the first 2H columns) are sigmoids of gi + gh; n needs r first.
            self.device.sum_activate(gi, gh, gates, 2 * H, H, NO_TANH_GATE)
            self.per_unit("gru_candidate", (gi, gh, gates), B, H)
            self.per_unit("gru_state", (gates, h, h_new), B, H)
            (hn,) = self.contiguous(gh[:, 2 * H :])  # gh already holds b_hh
        return h_new, GRUCache(x, h, w_ih, w_hh, gates, hn)

    def gru_cell_backward(self, dh_new, cache: GRUCache) -> tuple[Array, ...]:
        self.check_sizes(cache.x, cache.h, cache.w_ih)
        (dh_new,) = self.contiguous(dh_new)
        x, h, w_ih, w_hh, gates, hn = self.contiguous(*cache)
        B, H = h.shape
        da_x, da_h = self.empty((B, 3 * H), x), self.empty((B, 3 * H), x)
        if self.fused:
            self.per_unit("gru_backward_fused", (dh_new, h, gates, hn, da_x, da_h), B, H)
        else:
            self.per_unit("gru_candidate_update_grads", (dh_new, h, gates, da_x), B, H)
            self.per_unit("gru_reset_grad", (hn, gates, da_x), B, H)
            self.device.launch("gru_hidden_grads", B * 3 * H, (da_x, gates, da_h), B, H)
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = self.weight_grads(da_x, da_h, x, h, w_ih, w_hh)
        self.per_unit("gru_direct_path", (dh, dh_new, gates), B, H)
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh
