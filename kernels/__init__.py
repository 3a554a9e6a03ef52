"""minirad's hand-written operations: arrays in, arrays out. No autograd, no models.

The source folder is `kernels/` at the top of the repository (one folder per op, a lesson each);
it is installed as `minirad.kernels`, so that minirad installs one top-level name only.

    >>> from minirad import kernels
    >>> kernels.available()                       # backends that can run on this machine
    ['numpy', ...]
    >>> ops = kernels.get("numpy")                # an Ops: one method per op, here the reference
    >>> naive = kernels.get("numpy", conv2d="naive")  # choose a version per op folder

One folder per operation (conv2d, maxpool2d, linear, rnn, softmax, attention, lstm_sequence),
one file per backend:

    backend      file in each op folder   runs on
    numpy        reference.py             any CPU: the readable specification
    numba        numba_cpu.py             CPU, compiled by Numba, parallel
    cuda         numba_cuda.py            Numba CUDA: an NVIDIA GPU, or the Numba CUDA simulator
    cupy         cuda_c.py + <op>.cu      CUDA C, launched by CuPy on an NVIDIA GPU
    cuda_c_cpu   cuda_c.py + <op>.cu      the CPU: the same .cu compiled with g++ and emulated

Three words, three things: a *backend* is one of the named ways to run above (BACKENDS, below,
is their registry); `get(name)` returns an `Ops` object (kernels/_ops.py) with one validated
method per op of that backend; `minirad.backend` chooses which backend the engine calls. `get`
raises a ValueError that says why when a backend cannot run here.

Versions. Each backend file keeps the steps of its idea side by side, as named versions
(VERSIONS, DEFAULT_VERSION). A version name means the same thing in every op folder and on
every backend:

    naive       the formula as loops, one output (or one dy entry) at a time; on a GPU one
                thread per output element, every operand read from global memory
    parallel    the naive loops with the outer one spread over the CPU's cores (prange)
    blocked     CPU loops regrouped into blocks that stay in cache or in registers while reused
    tiled       GPU: a block of threads stages TILE x TILE tiles of the operands in shared
                memory between barriers (blocked: caches and registers; tiled: shared memory)
    block       GPU: one thread block per row, its partial results reduced in shared memory
    fused       several passes (or kernel launches) merged into one, every intermediate kept
                in registers
    im2col      the receptive fields copied into the columns of a matrix, then matrix products
    blas        the matrix products handed to the machine's BLAS, through NumPy's matmul
    vectorised  whole-array NumPy expressions, no loop over the elements
    atomic      GPU max-pooling backward: each output adds its dy into dx with an atomic add
    gather      GPU max-pooling backward: each input pixel gathers the dy of the windows it won

    op folder      numpy             numba                    cuda, cupy, cuda_c_cpu
    conv2d         naive, im2col*    naive, blocked*          naive, tiled*
    maxpool2d      vectorised*       naive, parallel*         atomic, gather*
    linear         blas*             naive, blocked, blas*    naive, tiled*
    rnn            vectorised*       naive, fused*            naive, fused*
    softmax        vectorised*       naive, parallel*         naive, block*
    attention      vectorised*       fused*                   vectorised*
    lstm_sequence  vectorised*       fused*                   vectorised*
    (* the default)

Notation. The letters of every docstring, kernel and tutorial, per op folder. A size is a
capital, and the index that runs over it is the same letter in lower case (0 <= k < K). sh, sw,
ph, pw, kh, kw are two-letter names, not products (formulas set them upright).

  conv2d, maxpool2d (NCHW, PyTorch's layouts)
    N, n     images in the batch
    C, c     input channels (max-pooling keeps them)
    H, h     input rows;      W, w  input columns: a pixel is x[n, c, h, w]
    K, k     output channels, one per filter: weight w (K, C, R, S), bias b (K,)
    R, r     filter rows;     S, s  filter columns: (r, s) is an offset in the window
    kh, kw   the pooling window (maxpool2d's `kernel`); its offsets are r < kh, s < kw
    P, p     output rows;     Q, q  output columns: y (N, K, P, Q); pooling's y (N, C, P, Q)
    sh, sw   the stride; ph, pw the padding (rows, columns); x_pad: x with the padding added
             P = (H + 2ph - R) // sh + 1,   Q = (W + 2pw - S) // sw + 1   (pooling: kh, kw)
             y[n, k, p, q] = b[k] + sum_{c,r,s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]
             (code, where w is the weight array, names a pixel's column j (v in conv2d's
             numba_cuda.py) and its row h or i; the pooling kernels' code says (i, j) too)
  linear
    N, n     rows of the batch: x (N, in), w (out, in), b (out,), y (N, out)
    in, i    input features; out, o output features (n_in, n_out in code: `in` is a keyword)
             y[n, o] = b[o] + sum_i x[n, i] * w[o, i]
    M, N, K  a matrix product C = A @ B, A (M, K), B (K, N): C[m, n] = sum_k A[m, k] * B[k, n]
  rnn (one time step of a cell; PyTorch's layouts and gate order)
    B, b     rows of the batch (the biases are always b_ih and b_hh)
    I        input size;   H, j  hidden size and a hidden unit
    G        gates: 1 (tanh-RNN), 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n), stacked in G*H rows
             x (B, I); h, c (B, H) before the step, h_new, c_new after it; w_ih (G*H, I),
             w_hh (G*H, H), b_ih, b_hh (G*H,); a (B, G*H) the pre-activations (a_i, a_f, ...);
             the GRU keeps gi = x w_ih^T + b_ih and gh = h w_hh^T + b_hh apart (gi_r, gh_n, ...)
    T, t     a sequence of T steps, step t (x_t, h_t); a sequence array is (T, B, I)
  softmax (the decoder's last step)
    R, L     the input seen as R rows of length L, the softmax axis moved last
    m        the maximum of a row; y = softmax(x) or log_softmax(x), the forward's output
    N, V     logits (N, V): N rows (a decoder's B sentences of T steps, flattened), V words
    M        the rows whose target is kept (targets (N,), != ignore_index)
  attention (additive, one decoder step)
    B, b     images in the batch
    L, l     positions attended to (the cells of the feature grid; `position` in loops)
    D, d     key width: keys (B, L, D), context (B, D)
    A, a     the attention's hidden width: query (B, A), projected_keys (B, L, A), v (A,),
             hidden = tanh(projected_keys + query) (B, L, A); scores e and weights alpha (B, L)
  lstm_sequence (an LSTM over a whole sequence: the rnn letters, with G = 4)
    T, t     steps: x (T, B, I) holds every x_t, hs (T, B, H) every h_t; h0, c0 (B, H) the
             state before step 0, h_n, c_n (B, H) the state after the last (PyTorch's names)
    h_prev   (T, B, H) the state each step reads: h0, then hs[0] .. hs[T-2] (c_prev likewise)
    DA       (T, B, 4H) every step's da. The products taken once for all steps see x, DA and
             h_prev as (T*B, ...) matrices: A_x = x w_ih^T, dw_ih = DA^T x, dw_hh = DA^T h_prev
  every op
    dX       dL/dX, the gradient of the loss L with respect to the array X: dy, dw, dh_new, ...
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from minirad.kernels._ops import FAMILIES, Ops

# Numba's parallel loops run on an OpenMP thread pool, NumPy's matmuls on OpenBLAS's own pool.
# By default idle OpenMP threads spin for a while before sleeping, and so do OpenBLAS's: when a
# model alternates small parallel kernels with BLAS calls (a decoder step: matmul, softmax,
# matmul...), each pool's spinning threads hold the cores the other pool needs: on the 2-core CI
# machine a report-model training step took five times as long as with passive waiting (with
# OpenBLAS on its default two threads; with one BLAS thread, as minirad.backend.small_blas runs
# the report model, the policy makes no difference). The price: an isolated parallel kernel pays
# to wake the sleeping threads. The timings are in benchmarks/RESULTS.md, "Measurements behind
# the kernels' design"; the tables there are measured with this policy.
# libgomp reads this variable when Numba first loads it (the first parallel launch), so it is
# set here, before any kernel runs; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["Ops", "FAMILIES", "available", "get", "why_unavailable", "BACKENDS"]


@dataclass(frozen=True)
class BackendSpec:
    """How to assemble one backend: the file name in each op folder and what it runs on."""

    file: str
    array_types: Callable[[], tuple[type, ...]]
    # Returns None when the backend can run here, else a one-line reason.
    unavailable_reason: Callable[[], str | None]
    # For the CUDA C host files: the runtime passed to their make_versions(runtime).
    runtime: Callable[[], Any] | None = None

    def version_table(self, family: str) -> tuple[dict, str]:
        """(VERSIONS, DEFAULT_VERSION) of this backend's file in op folder `family`."""
        module = importlib.import_module(f"minirad.kernels.{family}.{self.file}")
        if self.runtime is not None:
            return module.make_versions(self.runtime()), module.DEFAULT_VERSION
        return module.VERSIONS, module.DEFAULT_VERSION


def _numpy_arrays() -> tuple[type, ...]:
    return (np.ndarray,)


def _always() -> str | None:
    return None


def _numba_missing() -> str | None:
    try:
        import numba  # noqa: F401
    except ImportError as error:
        return f"numba cannot be imported ({error}); pip install numba"
    return None


def _cuda_arrays() -> tuple[type, ...]:
    from minirad.kernels.runtime import numba_cuda

    return numba_cuda.array_types()


def _cuda_missing() -> str | None:
    from minirad.kernels.runtime import numba_cuda

    return numba_cuda.unavailable_reason()


def _cupy_arrays() -> tuple[type, ...]:
    import cupy

    return (cupy.ndarray,)


def _cupy_missing() -> str | None:
    from minirad.kernels.runtime import cupy_module

    return cupy_module.unavailable_reason()


def _emulation_missing() -> str | None:
    from minirad.kernels.runtime import cuda_c_runtimes

    return cuda_c_runtimes.emulation_unavailable_reason()


def _emulation_runtime():
    from minirad.kernels.runtime import cuda_c_runtimes

    return cuda_c_runtimes.emulation()


def _cupy_runtime():
    from minirad.kernels.runtime import cuda_c_runtimes

    return cuda_c_runtimes.cupy_gpu()


BACKENDS: dict[str, BackendSpec] = {
    "numpy": BackendSpec("reference", _numpy_arrays, _always),
    "numba": BackendSpec("numba_cpu", _numpy_arrays, _numba_missing),
    "cuda": BackendSpec("numba_cuda", _cuda_arrays, _cuda_missing),
    "cupy": BackendSpec("cuda_c", _cupy_arrays, _cupy_missing, _cupy_runtime),
    "cuda_c_cpu": BackendSpec("cuda_c", _numpy_arrays, _emulation_missing, _emulation_runtime),
}


def _missing_files(spec: BackendSpec) -> list[str]:
    return [
        f"kernels/{family}/{spec.file}.py"
        for family in FAMILIES
        if importlib.util.find_spec(f"minirad.kernels.{family}.{spec.file}") is None
    ]


def why_unavailable(name: str) -> str | None:
    """None if backend `name` can run on this machine, else the reason it cannot."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; known: {sorted(BACKENDS)}"
    missing = _missing_files(BACKENDS[name])
    if missing:
        return f"incomplete in this checkout: no {', '.join(missing)}"
    return BACKENDS[name].unavailable_reason()


def available() -> list[str]:
    """Names of the backends that can run on this machine, reference first."""
    return [name for name in BACKENDS if why_unavailable(name) is None]


def get(name: str = "numpy", **versions: str) -> Ops:
    """The ops of backend `name`, a version chosen per op folder if given (conv2d="naive")."""
    reason = why_unavailable(name)
    if reason is not None:
        raise ValueError(f"backend {name!r} is not available: {reason}")
    for family in versions:
        if family not in FAMILIES:
            raise ValueError(f"{family}: not an op folder; choose from {sorted(FAMILIES)}")
    spec = BACKENDS[name]
    tables = {family: spec.version_table(family) for family in FAMILIES}
    return Ops(name, tables, spec.array_types(), versions)
