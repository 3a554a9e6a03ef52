"""Compiled for real GPUs without one: NVRTC as CuPy calls it, ptxas limits, the CuPy runtime.

- NVRTC (the compiler of CuPy's RawModule) compiles every .cu for sm_75 and sm_90 with the options
  CuPy passes (kernels/verify/nvrtc_check.py); skipped where no libnvrtc is found.
- Every CUDA C kernel fits the GPU at the block size its host code launches it with: no
  register spills, static shared memory within 48 KiB, registers x threads within the register
  file (kernels/verify/gpu_limits.py, from `ptxas -v`); skipped where nvcc is absent.
- cupy_module reports the backend unavailable, with the reason, when CuPy cannot compile, and
  looks each kernel up once, not at every launch (a stand-in for cupy: no GPU needed).

The Numba CUDA kernels get the same compile and limit checks in test_numba_cuda_ptx.py.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from minirad.kernels.runtime import cupy_module
from minirad.kernels.runtime.cuda_source import parse_kernels
from minirad.kernels.runtime.nvcc import (
    ARCHES,
    KernelResources,
    cuda_sources,
    nvcc_path,
    parse_ptxas_log,
    resources,
)
from minirad.kernels.verify import gpu_limits, nvrtc_check

SOURCES = cuda_sources()
needs_nvcc = pytest.mark.skipif(nvcc_path() is None, reason="nvcc not installed")
needs_nvrtc = pytest.mark.skipif(
    nvrtc_check.find_libnvrtc() is None,
    reason="no libnvrtc (pip install nvidia-cuda-nvrtc-cu12)",
)

# A kernel that keeps 64 floats live at once under a bound of 32 registers a thread: it must spill.
SPILLING_SOURCE = """
extern "C" __global__ void __launch_bounds__(1024, 2) spills_f32(const float* x, float* y) {
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = x[threadIdx.x * 64 + i];
#pragma unroll
    for (int r = 1; r < 8; ++r)
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] = acc[i] * acc[(i + r) % 64] + x[r];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 64; ++i) s += acc[i] * acc[63 - i];
    y[threadIdx.x] = s;
}
"""


# -- the ptxas report, parsed once for nvcc's and NVRTC's logs ---------------------------------

PTXAS_LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'tiled_f32' for 'sm_90'
ptxas info    : Function properties for tiled_f32
ptxas         .     8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'plain_f32' for 'sm_90'
ptxas info    : Used 10 registers, 360 bytes cmem[0]
"""


def test_ptxas_log_is_parsed_kernel_by_kernel():
    tiled, plain = sorted(parse_ptxas_log(PTXAS_LOG, "x.cu"), key=lambda k: k.kernel != "tiled_f32")
    assert tiled == KernelResources("x.cu", "tiled_f32", "sm_90", 40, 2048, 12, 16, 1)
    # a kernel with no "Function properties" line must not inherit the previous one's spills
    assert plain == KernelResources("x.cu", "plain_f32", "sm_90", 10, 0, 0, 0, 0)


# -- the limits ------------------------------------------------------------------------------------


def test_registers_are_counted_per_warp_in_units_of_256():
    assert gpu_limits.registers_per_block(64, 1024) == 64 * 1024  # exactly the register file
    assert gpu_limits.registers_per_block(65, 1024) == 72 * 1024  # 65 x 32 = 2080 -> 2304 a warp
    assert gpu_limits.registers_per_block(10, 33) == 2 * 512  # 2 warps, 320 -> 512 each


def _kernel(**changes) -> KernelResources:
    fits = dict(registers=32, shared_bytes=1024, spill_store_bytes=0, spill_load_bytes=0)
    return KernelResources("x.cu", "k_f32", "sm_75", barriers=0, **{**fits, **changes})


@pytest.mark.parametrize(
    "changes, threads, expected",
    [
        ({}, 1024, None),
        ({"spill_load_bytes": 4}, 256, "spills 0 bytes stored, 4 loaded"),
        ({"shared_bytes": 48 * 1024 + 1}, 256, "49153 bytes of static shared memory"),
        ({"registers": 65}, 1024, "65 registers/thread need 73728 registers per block"),
    ],
    ids=["fits", "spills", "shared", "registers"],
)
def test_limit_problems_name_the_limit(changes, threads, expected):
    problems = gpu_limits.limit_problems(_kernel(**changes), threads)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems
        assert "x.cu k_f32 (sm_75" in problems[0]


@needs_nvcc
def test_a_spilling_kernel_is_caught(tmp_path):
    """The seeded bug, end to end: the real ptxas report of a spilling kernel fails the check."""
    path = tmp_path / "spills.cu"
    path.write_text(SPILLING_SOURCE)
    (found,) = resources(path, "sm_75")
    assert found.spill_store_bytes > 0 and found.spill_load_bytes > 0
    assert "spills" in gpu_limits.limit_problems(found, 1024)[0]


@pytest.fixture(scope="module")
def launched_blocks():
    """Each CUDA C kernel's largest block, recorded from the host code in the emulation."""
    from minirad import kernels

    reason = kernels.why_unavailable("cuda_c_cpu")
    if reason is not None:
        pytest.skip(reason)
    return gpu_limits.record_cuda_c_blocks()


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_cuda_c_kernel_fits_the_gpu(source, arch, launched_blocks):
    found = resources(source, arch)
    assert {k.kernel for k in found} == set(parse_kernels(source.read_text()))
    never_launched = [k.kernel for k in found if k.kernel not in launched_blocks]
    assert not never_launched, f"exercise_every_op launches none of {never_launched}"
    problems = [p for k in found for p in gpu_limits.limit_problems(k, launched_blocks[k.kernel])]
    assert not problems, "\n".join(problems)


# -- NVRTC, as CuPy calls it -------------------------------------------------------------------


def test_cupy_options_are_ours_plus_cupys():
    options = nvrtc_check.cupy_options("sm_90")
    assert options[: len(cupy_module.NVRTC_OPTIONS)] == cupy_module.NVRTC_OPTIONS
    assert {"-ftz=true", "-arch=sm_90", "--device-as-default-execution-space"} <= set(options)


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_nvrtc_compiles_every_source_as_cupy_would(source, arch, launched_blocks):
    result = nvrtc_check.compile_file(source, arch)
    assert f".target {arch}" in result.ptx and result.cubin_bytes > 0
    names = set(parse_kernels(source.read_text()))
    missing = [name for name in names if f".entry {name}(" not in result.ptx]
    assert not missing, f"{source.name}: NVRTC's PTX lacks {missing}"
    # NVRTC's own ptxas (with CuPy's -ftz=true) must respect the limits too
    assert {k.kernel for k in result.resources} == names
    problems = [
        p for k in result.resources for p in gpu_limits.limit_problems(k, launched_blocks[k.kernel])
    ]
    assert not problems, "\n".join(problems)


@needs_nvrtc
def test_nvrtc_refuses_what_only_nvcc_accepts():
    """A host header: nvcc finds it, NVRTC (no system headers) must not; the log says which."""
    source = '#include <stdio.h>\nextern "C" __global__ void k_f32(float* x) { x[0] = 1.0f; }\n'
    with pytest.raises(nvrtc_check.NvrtcError, match="stdio.h"):
        nvrtc_check.compile_cuda(source, "host_header.cu", "sm_75")


# -- cupy_module without a GPU: a stand-in for cupy ----------------------------------------------


class FakeRawModule:
    """cupy.RawModule's interface; counts get_function calls, or fails like a missing NVRTC."""

    lookups: list[str] = []
    error: Exception | None = None

    def __init__(self, code, options):
        self.code, self.options = code, options

    def get_function(self, name):
        if FakeRawModule.error is not None:
            raise FakeRawModule.error
        FakeRawModule.lookups.append(name)
        return lambda grid, block, args: None


@pytest.fixture
def fake_cupy(monkeypatch):
    FakeRawModule.lookups, FakeRawModule.error = [], None
    runtime = SimpleNamespace(runtimeGetVersion=lambda: 12090)
    cupy = SimpleNamespace(
        is_available=lambda: True,
        RawModule=FakeRawModule,
        ndarray=np.ndarray,
        cuda=SimpleNamespace(runtime=runtime),
    )
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    cupy_module.nvrtc_problem.cache_clear()
    yield cupy
    cupy_module.nvrtc_problem.cache_clear()


def test_without_cupy_the_reason_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    assert cupy_module.unavailable_reason() == "cupy is not installed (pip install minirad[gpu])"


def test_a_gpu_without_nvrtc_is_reported_unavailable(fake_cupy):
    FakeRawModule.error = RuntimeError("libnvrtc.so.12: cannot open shared object file")
    reason = cupy_module.unavailable_reason()
    assert reason is not None, "a cupy that cannot compile was reported available"
    assert "NVRTC" in reason and "libnvrtc.so.12" in reason
    assert 'pip install "cupy-cuda12x[ctk]"' in reason


def test_a_gpu_with_nvrtc_is_available(fake_cupy):
    assert cupy_module.unavailable_reason() is None
    assert cupy_module.unavailable_reason() is None
    assert FakeRawModule.lookups == ["minirad_probe"], "the probe compiles once per process"


def test_each_kernel_is_looked_up_once_not_at_every_launch(fake_cupy):
    linear = next(p for p in SOURCES if p.name == "linear.cu")
    module = cupy_module.CupyModule(linear)
    y, b = np.zeros((4, 3), np.float32), np.zeros(3, np.float32)
    for _ in range(3):
        module.launch("add_bias_f32", (1,), (32,), (y, b, np.int32(4), np.int32(3)))
    assert FakeRawModule.lookups.count("add_bias_f32") == 1
