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
        import cupy

        return bool(cupy.is_available())
    except Exception:  # ImportError, or a CUDA driver error raised by cupy itself
        return False


def _use_device_standin() -> bool:
    """Without a real GPU, `cupy` is the device-strict stand-in (tests/device_standin.py), so
    that every `cuda` and `cupy` case runs on device arrays, through the simulator and the g++
    emulation. The default backend the engine would pick without it ("auto" on this machine)
    is pinned through MINIRAD_BACKEND first, so that no test moves to the slow emulation by
    accident; a test that wants the stand-in asks for "cupy" or "cuda" by name."""
    if REAL_GPU or os.environ.get("MINIRAD_STANDIN") == "0":
        return False
    from minirad import backend

    os.environ.setdefault("MINIRAD_BACKEND", backend.resolve("auto"))
    for name in [m for m in sys.modules if m == "cupy" or m.startswith(("cupy.", "cupyx"))]:
        del sys.modules[name]  # a cupy that is installed but has no GPU to run on
    import device_standin

    device_standin.install()
    return True


REAL_GPU = _have_real_gpu()
STANDIN = _use_device_standin()


def pytest_report_header(config):
    if REAL_GPU:
        return "GPU backends: a real CUDA GPU"
    if STANDIN:
        return "GPU backends: the device stand-in (tests/device_standin.py) on the CPU"
    return "GPU backends: off (MINIRAD_STANDIN=0)"


def pytest_collection_modifyitems(config, items):
    if REAL_GPU:
        return
    skip = pytest.mark.skip(reason="needs a real CUDA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
