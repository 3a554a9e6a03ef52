"""minirad: deep learning from the inside, proved on chest-X-ray report writing.

The hand-written kernels are `minirad.kernels`: the source folder `kernels/` beside this one,
mapped to that name by pyproject.toml (`[tool.setuptools] package-dir`). Everything else here
builds on them.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# How long an idle OpenBLAS thread spins before it sleeps: 2^n CPU cycles. OpenBLAS's default,
# n = 28, is about 0.1 s; the fused decoder's products run on two BLAS threads
# (models/fused_decoder.py), and for 0.1 s after them the second thread keeps spinning on a
# core that Numba's parallel kernels of the encoder's backward pass need. With n = 20 (about
# 0.3 ms) it stays awake between the decoder's products, microseconds apart, and sleeps soon
# after the last one. Measured on the 2-core machine, one training step of the bundled model's
# architecture, each setting in its own process, alternated five times (10 steps each): median
# 284-323 ms with n = 20 against 307-374 ms with the default, faster in every pair.
# OpenBLAS reads the variable once, when NumPy loads it, so it is set here, in the package's
# first module, before anything imports NumPy: a program that imported NumPy before minirad
# keeps the default. A value the user set is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

try:
    __version__ = version("minirad")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
