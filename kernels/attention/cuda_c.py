"""Additive attention, one decoder step, on the CUDA C backends.

Interim: the reference's array formulas on the runtime's array module (CuPy, or NumPy under the
CPU emulation), with the softmax over positions and its backward launched as this backend's
softmax kernels (one block per row: kernels/softmax/softmax.cu). A kernel of its own, fusing
the tanh, the scores and the context, is not written yet.
"""

from __future__ import annotations

from minirad.kernels.attention.reference import make_versions as _array_versions
from minirad.kernels.softmax import cuda_c as _softmax

DEFAULT_VERSION = "vectorised"


def make_versions(runtime) -> dict:
    softmax_ops = _softmax.make_versions(runtime)[_softmax.DEFAULT_VERSION]
    return _array_versions(runtime.xp, softmax_ops)
