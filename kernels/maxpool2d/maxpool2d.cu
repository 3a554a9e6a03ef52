// maxpool2d.cu — 2-D max-pooling, forward and backward.
//
//   y[n, c, p, q]      = max_{r < kh, s < kw} x[n, c, p*sh + r - ph, q*sw + s - pw]
//   argmax[n, c, p, q] = h*W + w of that maximum (the first in window order on ties; NaN wins:
//                        PyTorch's convention, so its return_indices output compares directly)
//   dx[n, c, argmax[n, c, p, q]] += dy[n, c, p, q]
//
//   x, dx (N, C, H, W)   y, dy, argmax (N, C, P, Q), argmax as long long (int64)
//   P = (H + 2ph - kh) / sh + 1,  Q = (W + 2pw - kw) / sw + 1; padding counts as -infinity.
//   All arrays C-contiguous, indexed as flat buffers; planes = N * C.
//
// Kernels:
//   maxpool2d_forward          one thread per output element scans its kh x kw window.
//   maxpool2d_backward_atomic  one thread per OUTPUT element adds its dy into dx[argmax] with
//                              atomicAdd (dx zeroed first). It is the formula as written, but
//                              overlapping windows (stride < kernel) make threads collide on one
//                              pixel: the atomics serialise there, and their order — hence the
//                              rounding of the float sum — changes from run to run.
//   maxpool2d_backward_gather  one thread per INPUT element loops over the few outputs whose
//                              window can contain it and sums the dy of those whose argmax is
//                              its own index. Each dx element is written once by one thread in a
//                              fixed order: no atomics, no zeroing, deterministic.
// The host code (cuda_c.py) offers them as versions "atomic" and "gather" (default).
//
// Indices are int, as in conv2d.cu: every array must stay below 2^31 elements; the host code
// (cuda_c.py) refuses larger ones from their shapes, before it copies or allocates anything
// (grids.check_int_indices).
//
// Every kernel exists for float (suffix _f32) and double (_f64): the body is a template, the
// extern "C" entry points give the launchers plain names. Build check:
//   nvcc -ptx -arch=sm_75 maxpool2d.cu -o maxpool2d.ptx
// Tested on the CPU through runtime/cuda_emu.h (g++), run on a GPU through CuPy.

template <typename T>
__device__ void maxpool2d_forward(const T* x, T* y, long long* argmax, int planes, int H, int W,
                                  int P, int Q, int kh, int kw, int sh, int sw, int ph, int pw) {
    int index = blockIdx.x * blockDim.x + threadIdx.x;  // row-major over (planes, P, Q)
    if (index >= planes * P * Q) return;
    int q = index % Q, p = index / Q % P, plane = index / (Q * P);
    const T* x_plane = x + (long long)plane * H * W;
    T best = x_plane[0];  // any value of type T: the window's first element replaces it
    int best_index = -1;
    for (int r = 0; r < kh; ++r) {
        int i = p * sh + r - ph;
        if (i < 0 || i >= H) continue;  // a padding row: -infinity never wins
        for (int s = 0; s < kw; ++s) {
            int j = q * sw + s - pw;
            if (j < 0 || j >= W) continue;
            T value = x_plane[i * W + j];
            // Strictly greater keeps the first maximum. NaN wins, as in PyTorch: NaN is the
            // only value that is not equal to itself.
            if (best_index < 0 || value > best || value != value) {
                best = value;
                best_index = i * W + j;
            }
        }
    }
    y[index] = best;
    argmax[index] = best_index;
}

template <typename T>
__device__ void maxpool2d_backward_atomic(const T* dy, const long long* argmax, T* dx,
                                          int planes, int HW, int PQ) {
    int index = blockIdx.x * blockDim.x + threadIdx.x;  // one thread per OUTPUT element
    if (index >= planes * PQ) return;
    int plane = index / PQ;
    // Overlapping windows can share a winner, so two threads may add to one dx element.
    atomicAdd(&dx[(long long)plane * HW + argmax[index]], dy[index]);
}

// The first output o whose window (inputs o*stride - pad ... o*stride - pad + k - 1) contains
// input index i: o >= (i + pad - k + 1) / stride, rounded up, and o >= 0. (C's / truncates
// towards zero, so the rounding up is done only for a positive numerator.)
__device__ __forceinline__ int first_window(int i, int pad, int k, int stride) {
    int lowest = i + pad - k + 1;
    return lowest <= 0 ? 0 : (lowest + stride - 1) / stride;
}

// The last output o whose window contains input index i: o <= (i + pad) / stride, o < n_outputs.
__device__ __forceinline__ int last_window(int i, int pad, int stride, int n_outputs) {
    return min((i + pad) / stride, n_outputs - 1);
}

template <typename T>
__device__ void maxpool2d_backward_gather(const T* dy, const long long* argmax, T* dx,
                                          int planes, int H, int W, int P, int Q, int kh, int kw,
                                          int sh, int sw, int ph, int pw) {
    int index = blockIdx.x * blockDim.x + threadIdx.x;  // one thread per INPUT element
    if (index >= planes * H * W) return;
    int j = index % W, i = index / W % H, plane = index / (W * H);
    // Only these outputs' windows contain (i, j); with stride > kernel the range can be empty.
    int p_first = first_window(i, ph, kh, sh), p_last = last_window(i, ph, sh, P);
    int q_first = first_window(j, pw, kw, sw), q_last = last_window(j, pw, sw, Q);
    long long first_output = (long long)plane * P * Q;
    T total = 0;
    for (int p = p_first; p <= p_last; ++p)
        for (int q = q_first; q <= q_last; ++q) {
            long long o = first_output + p * Q + q;
            if (argmax[o] == i * W + j) total += dy[o];
        }
    dx[index] = total;
}

// The launchers (cupy's get_function, the emulation's generated emu_launch_*) find kernels by
// these plain extern "C" names, written out rather than generated by a macro so that a reader
// (and the emulation's parser) sees every signature.
extern "C" __global__ void maxpool2d_forward_f32(const float* x, float* y, long long* argmax, int planes, int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int ph, int pw) {
    maxpool2d_forward<float>(x, y, argmax, planes, H, W, P, Q, kh, kw, sh, sw, ph, pw);
}
extern "C" __global__ void maxpool2d_forward_f64(const double* x, double* y, long long* argmax, int planes, int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int ph, int pw) {
    maxpool2d_forward<double>(x, y, argmax, planes, H, W, P, Q, kh, kw, sh, sw, ph, pw);
}
extern "C" __global__ void maxpool2d_backward_atomic_f32(const float* dy, const long long* argmax, float* dx, int planes, int HW, int PQ) {
    maxpool2d_backward_atomic<float>(dy, argmax, dx, planes, HW, PQ);
}
extern "C" __global__ void maxpool2d_backward_atomic_f64(const double* dy, const long long* argmax, double* dx, int planes, int HW, int PQ) {
    maxpool2d_backward_atomic<double>(dy, argmax, dx, planes, HW, PQ);
}
extern "C" __global__ void maxpool2d_backward_gather_f32(const float* dy, const long long* argmax, float* dx, int planes, int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int ph, int pw) {
    maxpool2d_backward_gather<float>(dy, argmax, dx, planes, H, W, P, Q, kh, kw, sh, sw, ph, pw);
}
extern "C" __global__ void maxpool2d_backward_gather_f64(const double* dy, const long long* argmax, double* dx, int planes, int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int ph, int pw) {
    maxpool2d_backward_gather<double>(dy, argmax, dx, planes, H, W, P, Q, kh, kw, sh, sw, ph, pw);
}
