"""An LSTM over a whole sequence on the `cuda` backend (Numba CUDA).

Interim, and no kernel of its own: the reference's array formulas (reference.py) run on the
backend's array module (CuPy on a GPU; under the simulator the test suite's stand-in or NumPy).
The products go to cuBLAS through CuPy, and each step's gate arithmetic is a few CuPy
elementwise launches. A fused gate kernel per step (the rnn family's numba_cuda.py has the
one-step version) is not written yet.
"""

from __future__ import annotations

from minirad.kernels.lstm_sequence.reference import make_versions
from minirad.kernels.runtime.numba_cuda import xp

VERSIONS = make_versions(xp())
DEFAULT_VERSION = "vectorised"
