"""On a real GPU: the GPU backends at realistic shapes, which the simulator could never run.

Marked `gpu`: skipped cleanly where no CUDA GPU is present (see conftest.py). On a GPU machine
the backends `cuda` and `cupy` also join every property test of test_kernels.py, with CuPy
arrays as inputs; these tests add shapes of the report model's size.
"""

from __future__ import annotations

import pytest

from harness import DTYPES, Impl
from minirad import kernels
from shapes import CellCase, ConvCase, LinearCase, PoolCase, SoftmaxCase
from test_kernels import (
    check_conv2d,
    check_gru_cell,
    check_linear,
    check_lstm_cell,
    check_maxpool2d,
    check_rnn_tanh_cell,
    check_softmax_cross_entropy,
    check_softmax_family,
)

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ("cuda", "cupy")

CASES = {
    "conv2d": [
        (check_conv2d, ConvCase(4, 16, 32, 32, 32, 3, 3, (1, 1), (1, 1), True, True, 0)),
        (check_conv2d, ConvCase(2, 3, 8, 65, 63, 5, 5, (2, 3), (2, 1), False, False, 1)),
    ],
    "maxpool2d": [(check_maxpool2d, PoolCase(4, 32, 64, 64, (2, 2), (2, 2), (0, 0), True, 0))],
    "linear": [(check_linear, LinearCase(480, 256, 1000, True, True, 0))],
    "rnn": [
        (check, CellCase(B=32, I=64, H=128, scale=0.2, contiguous=True, seed=0))
        for check in (check_rnn_tanh_cell, check_lstm_cell, check_gru_cell)
    ],
    "softmax": [
        (check_softmax_family, SoftmaxCase((64, 1000), -1, 10.0, 0, True, 0)),
        (check_softmax_cross_entropy, SoftmaxCase((480, 1000), -1, 10.0, 3, True, 0)),
    ],
}


@pytest.mark.parametrize("family", list(CASES))
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_backend_at_model_shapes(backend, family):
    reason = kernels.why_unavailable(backend)
    if reason is not None:
        pytest.skip(reason)
    for version in kernels.get(backend).versions[family]:
        for dtype in DTYPES:
            impl = Impl(backend, family, version, dtype)
            for check, case in CASES[family]:
                check(impl, case)
