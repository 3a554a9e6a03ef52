"""The CUDA C sources: valid CUDA for nvcc, runnable in the emulation, and checkable by it.

`nvcc -ptx -arch=sm_75` needs no GPU, so every .cu is compiled by the real toolchain here
(skipped cleanly where nvcc is absent); sm_90, NVRTC with CuPy's options and the resource limits
ptxas reports are checked in test_gpu_compile.py. The numerical checks of the kernels are in
test_kernels.py (backend cuda_c_cpu); this file tests the emulation's power to catch the
classic GPU bug, a missing __syncthreads(), so that a green run means something.
"""

from __future__ import annotations

import numpy as np
import pytest

from minirad.kernels.runtime import cuda_c_cpu
from minirad.kernels.runtime.cuda_source import parse_kernels
from minirad.kernels.runtime.nvcc import compile_ptx, cuda_sources, nvcc_path

SOURCES = cuda_sources()


def test_there_are_cuda_sources():
    assert SOURCES, "no .cu files found under kernels/"


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc not installed")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles_to_ptx(source, tmp_path):
    ptx = compile_ptx(source, tmp_path)
    text = ptx.read_text()
    for kernel in parse_kernels(source.read_text()):
        assert f".entry {kernel}(" in text, f"{source.name}: {kernel} missing from the PTX"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_kernel_exists_in_float_and_double(source):
    names = set(parse_kernels(source.read_text()))
    assert names, f'{source.name}: no extern "C" __global__ kernels'
    stems = {name.rsplit("_", 1)[0] for name in names}
    for stem in stems:
        assert {f"{stem}_f32", f"{stem}_f64"} <= names, f"{source.name}: {stem} lacks a dtype"


def _remove_nth(text: str, token: str, n: int) -> str:
    """text with the n-th occurrence (from 0) of token replaced by an empty statement."""
    start = -1
    for _ in range(n + 1):
        start = text.index(token, start + 1)
    return text[:start] + "/* barrier removed */;" + text[start + len(token) :]


def _tiled_matmul(module, M=20, N=18, K=40, seed=0):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    C = np.zeros((M, N))
    grid, block = ((N + 15) // 16, (M + 15) // 16), (16, 16)
    strides = (np.int32(K), np.int32(1), np.int32(N), np.int32(1))
    args = (A, B, C, np.int32(M), np.int32(N), np.int32(K), *strides)
    module.launch("matmul_tiled_f64", grid, block, args)
    return C, A @ B


@pytest.mark.parametrize("barrier", [0, 1], ids=["before-use", "before-overwrite"])
def test_emulation_catches_a_missing_syncthreads(barrier, tmp_path):
    """Delete one of the tiled matmul's two barriers: the emulated result must go wrong."""
    source = next(p for p in SOURCES if p.name == "linear.cu").read_text()
    assert source.count("__syncthreads();") == 2, "the tiled matmul should have two barriers"
    mutated = _remove_nth(source, "__syncthreads();", barrier)
    path = tmp_path / "linear_missing_barrier.cu"
    path.write_text(mutated)
    module = cuda_c_cpu.load(path)
    wrong = sum(not np.allclose(*_tiled_matmul(module, seed=s)) for s in range(3))
    assert wrong > 0, "a missing __syncthreads went unnoticed by the emulation"
    correct = cuda_c_cpu.load(next(p for p in SOURCES if p.name == "linear.cu"))
    assert np.allclose(*_tiled_matmul(correct))


def test_emulation_refuses_strided_arrays():
    module = cuda_c_cpu.load(next(p for p in SOURCES if p.name == "linear.cu"))
    y = np.zeros((4, 6))[:, ::2]
    with pytest.raises(ValueError, match="y must be a C-contiguous ndarray"):
        module.launch("add_bias_f64", (1,), (32,), (y, np.zeros(3), np.int32(4), np.int32(3)))
