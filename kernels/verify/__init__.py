"""Tools that check the kernels rather than run them: none of the backends imports this folder.

    smoke.py      call every op of a backend once on tiny inputs (what compiles everything)
    ptx_check.py  compile every Numba CUDA kernel for a real GPU (sm_75 PTX) without a GPU

(runtime/nvcc.py, which compiles the .cu sources with nvcc and ptxas, stays in runtime/, where
tutorial 07 imports it from.)
"""
