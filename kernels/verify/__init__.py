"""Tools that check the kernels rather than run them: none of the backends imports this folder.

    smoke.py        call every op of a backend once on tiny inputs (what compiles everything)
    ptx_check.py    compile every Numba CUDA kernel for real GPUs (sm_75, sm_90) without a GPU,
                    at the GPU's block sizes, and check what ptxas reports
    nvrtc_check.py  compile every .cu with NVRTC and the options CuPy's RawModule passes
    gpu_limits.py   spills, shared memory and registers x threads of every compiled kernel
                    against the GPU's limits, at the block size its host code launches

(runtime/nvcc.py, which compiles the .cu sources with nvcc and ptxas and parses ptxas's report,
stays in runtime/, where tutorial 07 imports it from.)
"""
