"""`minirad doctor`: what this machine offers minirad, and why a backend cannot run.

Every fact is read, not assumed: library versions from their modules, BLAS from NumPy's build
configuration, GPUs from the drivers, the CUDA simulator from Numba's configuration.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys

from minirad import backend, kernels


def _module_version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # a broken install raises more than ImportError
        return (
            f"not installed ({type(error).__name__})"
            if not isinstance(error, ImportError)
            else "not installed"
        )
    return str(getattr(module, "__version__", "unknown version"))


def _blas() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # numpy < 1.25 has no dict mode
        return "unknown (numpy.show_config has no dict mode in this numpy)"
    text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    config = blas.get("openblas configuration")
    if config:
        text += f" [{config}]"
    return text


def _cuda_facts() -> list[tuple[str, str]]:
    from minirad.kernels.runtime.numba_cuda import cuda, simulator_on

    # Let the cuda backend decide first: it switches the simulator on where no GPU driver
    # exists, which is only possible before numba.cuda is imported.
    numba_cuda = cuda()
    simulator = simulator_on()
    facts = [("CUDA simulator", "on (no GPU driver found)" if simulator else "off")]
    if simulator:
        facts.append(("CUDA GPU (numba)", "no: the simulator replaces the GPU"))
    else:
        gpu = "yes" if numba_cuda.is_available() else "no (no driver or no device)"
        facts.append(("CUDA GPU (numba)", gpu))
    try:
        import cupy

        facts.append(("CuPy can allocate", "yes" if cupy.is_available() else "no (no GPU)"))
    except ImportError:
        facts.append(("CuPy can allocate", "no (cupy not installed: pip install minirad[gpu])"))
    except Exception as error:
        facts.append(("CuPy can allocate", f"no ({type(error).__name__})"))
    facts.append(("nvcc", shutil.which("nvcc") or "not found"))
    facts.append(("g++", shutil.which("g++") or "not found"))
    return facts


def report() -> list[tuple[str, str]]:
    """(label, value) rows of the doctor's report."""
    from minirad import __version__

    rows = [
        ("minirad", __version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPU(s)"),
    ]
    for name in ("numpy", "numba", "llvmlite", "cupy", "torch"):
        rows.append((name, _module_version(name)))
    rows.append(("BLAS", _blas()))
    blas_env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    rows.append(
        ("OPENBLAS_* in force", ", ".join(f"{k}={v}" for k, v in blas_env.items()) or "none")
    )
    rows.extend(_cuda_facts())
    for name in kernels.BACKENDS:
        reason = kernels.why_unavailable(name)
        rows.append(
            (f"backend {name}", "available" if reason is None else f"unavailable: {reason}")
        )
    rows.append(("backend auto picks", backend.why_auto()))
    chosen = os.environ.get("MINIRAD_BACKEND")
    rows.append(("MINIRAD_BACKEND", f"{chosen} (used instead of auto)" if chosen else "not set"))
    return rows


def print_report() -> None:
    rows = report()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
