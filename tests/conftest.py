"""Test configuration: hypothesis profiles and the `gpu` marker.

Profiles (choose with HYPOTHESIS_PROFILE): "dev" (default, 60 examples per property), "ci" (40,
derandomized so that CI is repeatable), "thorough" (500, for a night run). No deadline: the
first example of a Numba kernel includes its compilation.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The CUDA simulator runs every CUDA thread as a Python thread and its barriers make them take
# turns; a shorter switch interval (default 5 ms) makes those turns several times faster.
sys.setswitchinterval(5e-4)


def _have_real_gpu() -> bool:
    try:
        import cupy  # noqa: F401

        return bool(cupy.is_available())
    except Exception:  # ImportError, or a CUDA driver error raised by cupy itself
        return False


def pytest_collection_modifyitems(config, items):
    if _have_real_gpu():
        return
    skip = pytest.mark.skip(reason="needs a real CUDA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
