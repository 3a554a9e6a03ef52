"""Every Numba CUDA kernel compiles for a real GPU, and float32 kernels do float32 arithmetic.

The simulator runs kernels as Python: code the real compiler refuses (the builtin max(a, b) in
Numba 0.68's CUDA target) or silent float64 arithmetic in a float32 kernel (a literal 0 is an
int64; int64 * float32 is float64) pass there unnoticed. kernels.verify.ptx_check records the
argument types of every kernel launch under the simulator and compiles each for sm_75 with the
real toolchain in a second process; no GPU is needed, only the CUDA toolkit's NVVM.
"""

from __future__ import annotations

import pytest

from minirad.kernels.runtime.numba_cuda import cuda, simulator_on
from minirad.kernels.runtime.nvcc import nvcc_path


@pytest.fixture(scope="module")
def compiled():
    from minirad.kernels.verify.ptx_check import check

    cuda()  # the simulator where there is no GPU driver (chosen when the runtime was imported)
    if not simulator_on():
        pytest.skip("a GPU is present: the gpu tests compile and run the kernels for real")
    if nvcc_path() is None:
        pytest.skip("no CUDA toolkit (NVVM) to compile PTX with")
    return check()


def test_every_kernel_was_exercised(compiled):
    assert len({r["kernel"] for r in compiled}) >= 20, "too few kernels recorded"


def test_every_kernel_compiles_for_sm_75(compiled):
    failed = [f"{r['kernel']} {r['signature']}: {r['error']}" for r in compiled if "error" in r]
    assert not failed, "kernels the real CUDA compiler refuses:\n" + "\n".join(failed)


def test_float32_kernels_do_no_float64_arithmetic(compiled):
    slow = [f"{r['kernel']}: {r['f64_ops']} f64 ops" for r in compiled if r.get("f64_ops")]
    assert not slow, "float32 kernels with float64 instructions:\n" + "\n".join(slow)
