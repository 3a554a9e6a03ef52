"""The thread-pool settings minirad makes when it is imported (minirad/__init__.py,
kernels/__init__.py), checked in fresh interpreters: a setting read when a library loads only
works if it is in the environment before that library is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = (
    "import json, os, sys; import minirad; "
    "print(json.dumps([os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules]))"
)


def _probe(**env: str) -> tuple[str | None, bool]:
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**environment, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    timeout, numpy_loaded = json.loads(result.stdout)
    return timeout, numpy_loaded


def test_importing_minirad_sets_openblas_thread_timeout_before_numpy_loads():
    timeout, numpy_loaded = _probe()
    assert timeout == "20"
    # OpenBLAS reads the variable when NumPy loads it: minirad's first module must not load
    # NumPy before setting it.
    assert not numpy_loaded, "import minirad loaded NumPy: OPENBLAS_THREAD_TIMEOUT comes too late"


def test_a_thread_timeout_the_user_set_is_kept():
    assert _probe(OPENBLAS_THREAD_TIMEOUT="28")[0] == "28"
