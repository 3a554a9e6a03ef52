"""Additive attention, one decoder step, on the CUDA C backends (interim: array formulas)."""

from __future__ import annotations

from minirad.kernels.attention.reference import make_versions as _array_versions

DEFAULT_VERSION = "vectorised"


def make_versions(runtime) -> dict:
    return _array_versions(runtime.xp)
