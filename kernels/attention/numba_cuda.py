"""Additive attention, one decoder step, on the `cuda` backend (Numba CUDA).

Interim: the reference's array formulas on CuPy, with the softmax over positions and its
backward launched as this backend's softmax kernels (kernels/softmax/numba_cuda.py, one block
per row). A kernel of its own, fusing the tanh, the scores and the context, is not written yet.
"""

from __future__ import annotations

from minirad.kernels.attention.reference import make_versions
from minirad.kernels.runtime.numba_cuda import xp
from minirad.kernels.softmax import numba_cuda as _softmax

VERSIONS = make_versions(xp(), _softmax.VERSIONS[_softmax.DEFAULT_VERSION])
DEFAULT_VERSION = "vectorised"
