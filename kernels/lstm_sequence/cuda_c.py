"""An LSTM over a whole sequence on the CUDA C backends.

Interim, and no kernel of its own (there is no lstm_sequence.cu): the reference's array
formulas (reference.py) run on the runtime's array module, CuPy on a GPU (its products on
cuBLAS, the gate arithmetic as CuPy elementwise launches) or NumPy under the CPU emulation. A
fused gate kernel per step (the rnn family's rnn.cu has the one-step version) is not written
yet.
"""

from __future__ import annotations

from minirad.kernels.lstm_sequence.reference import make_versions as _array_versions

DEFAULT_VERSION = "vectorised"


def make_versions(runtime) -> dict:
    return _array_versions(runtime.xp)
