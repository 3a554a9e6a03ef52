"""Every Numba CUDA kernel compiles for real GPUs, as a GPU would compile it, and fits them.

The simulator runs kernels as Python: code the real compiler refuses (the builtin max(a, b) in
Numba 0.68's CUDA target) or silent float64 arithmetic in a float32 kernel (a literal 0 is an
int64; int64 * float32 is float64) pass there unnoticed, and it runs smaller blocks than a GPU
(TILE and THREADS_1D of kernels/runtime/numba_cuda.py). kernels.verify.ptx_check records the
argument types and block constant of every kernel launch under the simulator, and compiles each
for sm_75 and sm_90 with the real toolchain in processes without the simulator, where the block
constants take their GPU values; ptxas then reports registers, shared memory and spills. No GPU
is needed, only the CUDA toolkit (NVVM and ptxas).
"""

from __future__ import annotations

import pytest

from minirad.kernels.runtime import numba_cuda as runtime
from minirad.kernels.runtime.nvcc import ARCHES, nvcc_path, ptxas_path
from minirad.kernels.verify.ptx_check import BLOCK_CONSTANTS


@pytest.fixture(scope="module")
def compiled():
    from minirad.kernels.verify.ptx_check import check

    runtime.cuda()  # the simulator where there is no GPU driver (chosen when it was imported)
    if not runtime.simulator_on():
        pytest.skip("a GPU is present: the gpu tests compile and run the kernels for real")
    if nvcc_path() is None:
        pytest.skip("no CUDA toolkit (NVVM) to compile PTX with")
    return check()


def test_every_kernel_was_exercised(compiled):
    assert len({r["kernel"] for r in compiled["results"]}) >= 20, "too few kernels recorded"


def test_compiled_with_the_gpu_block_sizes(compiled):
    constants = compiled["constants"]
    assert constants["simulator"] is False
    # The simulator's blocks are smaller; the compiling processes must not have used them.
    assert (constants["TILE"], constants["THREADS_1D"]) != (runtime.TILE, runtime.THREADS_1D)
    # ...and the compiled code is sized by those constants: the tiled matmul's two tiles.
    tiled = [r for r in compiled["results"] if r["kernel"] == "linear:_matmul_tiled"]
    f32 = [r for r in tiled if "float64" not in " ".join(r["signature"])]
    if not ptxas_path():
        pytest.skip("no ptxas to report shared memory")
    assert f32 and all(r["shared_bytes"] == 2 * constants["TILE"] ** 2 * 4 for r in f32)


def test_every_launch_takes_its_block_from_the_constants(compiled):
    """A GPU block size is known only for blocks of THREADS_1D or TILE x TILE threads."""
    other = {
        k: r["blocks"]
        for k, r in compiled["launches"].items()
        if set(r["blocks"]) - set(BLOCK_CONSTANTS)
    }
    assert not other, f"launched with a block size from neither constant: {other}"


@pytest.mark.parametrize("arch", ARCHES)
def test_every_kernel_compiles_for(arch, compiled):
    results = [r for r in compiled["results"] if r["arch"] == arch]
    assert results, f"nothing was compiled for {arch}"
    failed = [f"{r['kernel']} {r['signature']}: {r['error']}" for r in results if "error" in r]
    assert not failed, f"kernels the real CUDA compiler refuses for {arch}:\n" + "\n".join(failed)


def test_float32_kernels_do_no_float64_arithmetic(compiled):
    slow = [
        f"{r['kernel']}: {r['f64_ops']} f64 ops" for r in compiled["results"] if r.get("f64_ops")
    ]
    assert not slow, "float32 kernels with float64 instructions:\n" + "\n".join(slow)


@pytest.mark.skipif(ptxas_path() is None, reason="no ptxas")
def test_no_kernel_spills_or_exceeds_the_gpu(compiled):
    problems = [p for r in compiled["results"] for p in r.get("problems", [])]
    problems += [r["ptxas_error"] for r in compiled["results"] if "ptxas_error" in r]
    assert not problems, "\n".join(problems)
