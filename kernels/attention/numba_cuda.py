"""Additive attention, one decoder step, on the `cuda` backend (interim: CuPy array formulas)."""

from __future__ import annotations

from minirad.kernels.attention.reference import make_versions
from minirad.kernels.runtime.numba_cuda import xp

VERSIONS = make_versions(xp())
DEFAULT_VERSION = "vectorised"
