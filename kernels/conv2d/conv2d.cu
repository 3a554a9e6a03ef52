// conv2d.cu — 2-D convolution (cross-correlation, as in every deep-learning library), forward
// and backward, in CUDA C.
//
//   x (N, C, H, W)   w (K, C, R, S)   b (K,)   y, dy (N, K, P, Q)     all C-contiguous
//   stride (sh, sw), padding (ph, pw);  P = (H + 2ph - R) / sh + 1,  Q = (W + 2pw - S) / sw + 1
//   x_pad = x with ph zero rows and pw zero columns on each side; never built: a read in the
//   border returns 0 (x_padded below).
//
//   y[n, k, p, q]  = b[k] + sum_{c, r, s} x_pad[n, c, p*sh + r, q*sw + s] * w[k, c, r, s]
//   db[k]          = sum_{n, p, q} dy[n, k, p, q]
//   dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x_pad[n, c, p*sh + r, q*sw + s]
//   dx[n, c, h, w] = sum_{k, r, s} dy[n, k, p, q] * w[k, c, r, s], over the (r, s) for which some
//                    output (p, q) put window offset (r, s) on pixel (h, w):
//                    h + ph = p*sh + r,  w + pw = q*sw + s,  0 <= p < P,  0 <= q < Q.
//
// Versions (kernel names conv2d_<what>_<version>_<f32|f64>, what = forward, dx, dw, db, and
// sum_slices, the second pass of the tiled dw and db):
//   naive  one thread per output element, the sum as written, operands from global memory:
//          y[n,k,p,q]; dx[n,c,h,w] gathers from dy (each thread writes only its own element:
//          no atomics); dw[k,c,r,s] sums over n, p, q; db[k] one thread per channel.
//          (The readable baseline: dw has only K*CRS threads, each walking all of npq.)
//   tiled  the three sums are matrix products (the reference's im2col view):
//              forward  Y[k, npq]  = sum_crs W[k, crs]  * X_col[crs, npq]
//              dw       dW[k, crs] = sum_npq dY[k, npq] * X_col[crs, npq]
//              dx       dX[c, nhw] = sum_krs W[k, crs]  * dY_col[krs, nhw]
//          where npq is the flat index of (n, p, q), crs of (c, r, s), and so on, and
//              X_col[crs, npq]  = x_pad[n, c, p*sh + r, q*sw + s]
//              dY_col[krs, nhw] = dy[n, k, p, q] for the (p, q) that met pixel (h, w) with
//                                 offset (r, s); 0 where no output did.
//          Each product is linear.cu's tiled matmul: a TILE x TILE block of threads owns a
//          TILE x TILE block of the result and walks the sum one TILE-slice at a time, both
//          operand tiles staged in __shared__ memory between two __syncthreads(). The column
//          matrices are never stored ("implicit GEMM", as in cuDNN): each thread fetches its
//          element of a tile straight from x or dy. Every weight loaded serves TILE output
//          pixels, every input pixel TILE output channels.
//          Why not the classic "input tile with halo"? A block of TILE x TILE outputs needs
//          (TILE-1)*sh + R input rows, a size known only at run time, while a __shared__ array
//          needs one known at compile time. The column view gives TILE x TILE tiles for any
//          window and stride. For dx with stride 1, dY_col is the im2col of dy padded by
//          R-1-ph rows and S-1-pw columns, with the window flipped: dx is the convolution of dy
//          with the flipped kernel, channels swapped. With stride > 1 most entries of dY_col
//          are the zeros between strided outputs, multiplied for nothing (sh*sw times the
//          work), but the result is right. db: one block per channel (and per slice, below);
//          each thread sums a strided share of dy, then the block adds the partial sums
//          pairwise in shared memory (a tree of log2(THREADS) steps).
//          dw and db split their long sum across blocks. dW is a small matrix (K x CRS: 8 x 9
//          for a first layer) summed over a long npq (N*P*Q: 524,288 at a batch of 32 images
//          of 128 x 128): one block per tile of dW would be ONE block walking 32,768 tile
//          steps while every other SM of the GPU idles. So grid.z cuts the npq sum into
//          `slices` consecutive slices of `slice_length` terms: block (x, y, z) sums slice z of
//          its tile and writes it to partial[z][k][crs]; a second kernel, sum_slices, then adds
//          the slices of each dW element in order z = 0, 1, ... (db likewise, its grid K x
//          slices). Why two passes and not atomicAdd into a zeroed dw (one pass, no partial
//          buffer)? Float addition is not associative, and the order in which atomics from
//          different blocks land changes from run to run, so dw's last bits would too (the
//          reason maxpool2d's default backward is `gather`). The fixed order gives the same
//          bits every run, for one more small launch and slices x K x CRS scratch elements.
//          The host (cuda_c.py) derives `slices` from the work size (grids.split_reduction);
//          when dW alone fills the GPU, slices = 1 and the tile goes straight into dw.
//
// Geometry: the tiled kernels' 2-D grids put the columns of the result on grid.x and its rows
// (channels) on grid.y, whose limit is 65,535 blocks; the host caps grid.y there
// (grids.grid_2d) and each block takes one row tile after another, gridDim.y apart (a
// grid-stride loop), so that any number of rows is a legal launch.
//
// Indices are int: every array (and every flat index plus one loop step) must stay below
// 2^31; the host refuses larger arrays before it allocates anything (grids.check_int_indices).
//
// Every kernel exists for float (_f32) and double (_f64): the bodies are templates, the
// extern "C" entry points give the launchers plain names. Build check:
//   nvcc -ptx -arch=sm_75 kernels/conv2d/conv2d.cu -o /tmp/conv2d.ptx
// Tested on the CPU through runtime/cuda_emu.h (g++), run on a GPU through CuPy (cuda_c.py).

#define TILE 16      // side of the square thread blocks of the tiled products
#define THREADS 256  // threads per block of the naive kernels and of db_tiled (a power of two)

// The sizes of one convolution, computed once per thread from the launch's arguments.
struct ConvShape {
    int N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw;
};

__device__ ConvShape conv_shape(int N, int C, int H, int W, int K, int R, int S,
                                int sh, int sw, int ph, int pw) {
    int P = (H + 2 * ph - R) / sh + 1;
    int Q = (W + 2 * pw - S) / sw + 1;
    return ConvShape{N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw};
}

// i = (a * B + b) * C + c, a flat index into an (A, B, C) array -> (a, b, c).
__device__ void unravel3(int i, int B, int C, int& a, int& b, int& c) {
    a = i / (B * C);
    b = i / C % B;
    c = i % C;
}

// x_pad[n, c, h_pad, w_pad]: an element of x, or 0 in the padding border.
template <typename T>
__device__ T x_padded(const T* x, const ConvShape& g, int n, int c, int h_pad, int w_pad) {
    int h = h_pad - g.ph, w = w_pad - g.pw;
    if (h < 0 || h >= g.H || w < 0 || w >= g.W) return T(0);
    return x[((n * g.C + c) * g.H + h) * g.W + w];
}

// dy[n, k, p, q] of the output (p, q) whose window put offset (r, s) on pixel (h, w) of x; 0 if
// there is none. Pixel (h, w) lies at (h + ph, w + pw) in x_pad, and the window of output
// (p, q) covers x_pad[p*sh + r][q*sw + s]: so p*sh = h + ph - r must be a multiple of sh with
// 0 <= p < P (the same for q). The sign test comes first: C's % of a negative number is <= 0.
template <typename T>
__device__ T dy_reaching(const T* dy, const ConvShape& g, int n, int k, int h, int w,
                         int r, int s) {
    int p_sh = h + g.ph - r, q_sw = w + g.pw - s;
    if (p_sh < 0 || q_sw < 0 || p_sh % g.sh != 0 || q_sw % g.sw != 0) return T(0);
    int p = p_sh / g.sh, q = q_sw / g.sw;
    if (p >= g.P || q >= g.Q) return T(0);
    return dy[((n * g.K + k) * g.P + p) * g.Q + q];
}

// ---------------------------------------------------------------------------------------------
// Version "naive": one thread per output element
// ---------------------------------------------------------------------------------------------

template <typename T>
__device__ void forward_naive(const T* x, const T* w, const T* b, T* y, ConvShape g) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= g.N * g.K * g.P * g.Q) return;
    int nk, p, q;
    unravel3(i, g.P, g.Q, nk, p, q);
    int n = nk / g.K, k = nk % g.K;
    T total = b[k];
    for (int c = 0; c < g.C; ++c)
        for (int r = 0; r < g.R; ++r)
            for (int s = 0; s < g.S; ++s)
                total += x_padded(x, g, n, c, p * g.sh + r, q * g.sw + s) *
                         w[((k * g.C + c) * g.R + r) * g.S + s];
    y[i] = total;
}

// Gather, not scatter: thread (n, c, h, w) collects every dy that pixel fed, so no two threads
// write the same dx element.
template <typename T>
__device__ void dx_naive(const T* dy, const T* w, T* dx, ConvShape g) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= g.N * g.C * g.H * g.W) return;
    int nc, h, v;  // v: the pixel's column (w is the weight)
    unravel3(i, g.H, g.W, nc, h, v);
    int n = nc / g.C, c = nc % g.C;
    T total = 0;
    for (int k = 0; k < g.K; ++k)
        for (int r = 0; r < g.R; ++r)
            for (int s = 0; s < g.S; ++s)
                total += dy_reaching(dy, g, n, k, h, v, r, s) *
                         w[((k * g.C + c) * g.R + r) * g.S + s];
    dx[i] = total;
}

template <typename T>
__device__ void dw_naive(const T* dy, const T* x, T* dw, ConvShape g) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= g.K * g.C * g.R * g.S) return;
    int kc, r, s;
    unravel3(i, g.R, g.S, kc, r, s);
    int k = kc / g.C, c = kc % g.C;
    T total = 0;
    for (int n = 0; n < g.N; ++n)
        for (int p = 0; p < g.P; ++p)
            for (int q = 0; q < g.Q; ++q)
                total += dy[((n * g.K + k) * g.P + p) * g.Q + q] *
                         x_padded(x, g, n, c, p * g.sh + r, q * g.sw + s);
    dw[i] = total;
}

template <typename T>
__device__ void db_naive(const T* dy, T* db, int N, int K, int PQ) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= K) return;
    T total = 0;
    for (int n = 0; n < N; ++n)
        for (int pq = 0; pq < PQ; ++pq) total += dy[(n * K + k) * PQ + pq];
    db[k] = total;
}

// ---------------------------------------------------------------------------------------------
// Version "tiled": the three products as tiled matmuls over implicit column matrices
// ---------------------------------------------------------------------------------------------
// The block is TILE x TILE threads: tx = threadIdx.x runs along the columns of the result,
// ty = threadIdx.y along its rows. In each step of the sum, thread (ty, tx) loads
// a_tile[ty][tx] = A[row, i0 + tx] and b_tile[ty][tx] = B[i0 + ty, col]; outside the matrices
// it loads 0, so the multiply-adds need no bounds checks. No thread returns early: every
// thread must reach every __syncthreads().

template <typename T>
__device__ void forward_tiled(const T* x, const T* w, const T* b, T* y, ConvShape g) {
    // Y[k, npq] = sum_crs W[k, crs] * X_col[crs, npq]
    __shared__ T w_tile[TILE][TILE];  // W[this block's k, crs slice]
    __shared__ T x_tile[TILE][TILE];  // X_col[crs slice, this block's npq]
    int tx = threadIdx.x, ty = threadIdx.y;
    int npq = blockIdx.x * TILE + tx;  // this thread's column of Y
    int CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q;
    int n, p, q, c, r, s;
    unravel3(npq, g.P, g.Q, n, p, q);
    for (int k0 = blockIdx.y * TILE; k0 < g.K; k0 += gridDim.y * TILE) {  // row tiles of Y
        int k = k0 + ty;  // this thread's row of Y
        T total = 0;
        for (int i0 = 0; i0 < CRS; i0 += TILE) {
            // W is w itself, read as a K x CRS matrix.
            w_tile[ty][tx] = (k < g.K && i0 + tx < CRS) ? w[k * CRS + i0 + tx] : T(0);
            unravel3(i0 + ty, g.R, g.S, c, r, s);
            x_tile[ty][tx] = (i0 + ty < CRS && npq < NPQ)
                                 ? x_padded(x, g, n, c, p * g.sh + r, q * g.sw + s)
                                 : T(0);
            __syncthreads();  // the tiles are complete before anyone reads them
            for (int i = 0; i < TILE; ++i) total += w_tile[ty][i] * x_tile[i][tx];
            __syncthreads();  // everyone is done reading before the next tiles overwrite them
        }
        if (k < g.K && npq < NPQ) y[((n * g.K + k) * g.P + p) * g.Q + q] = total + b[k];
    }
}

template <typename T>
__device__ void dx_tiled(const T* dy, const T* w, T* dx, ConvShape g) {
    // dX[c, nhw] = sum_krs W[k, crs] * dY_col[krs, nhw]
    __shared__ T w_tile[TILE][TILE];   // W[krs slice, this block's c], transposed
    __shared__ T dy_tile[TILE][TILE];  // dY_col[krs slice, this block's nhw]
    int tx = threadIdx.x, ty = threadIdx.y;
    int nhw = blockIdx.x * TILE + tx;  // this thread's column of dX
    int RS = g.R * g.S, KRS = g.K * RS, NHW = g.N * g.H * g.W;
    int n, h, v, k, r, s;  // v: the pixel's column
    unravel3(nhw, g.H, g.W, n, h, v);
    for (int c0 = blockIdx.y * TILE; c0 < g.C; c0 += gridDim.y * TILE) {  // row tiles of dX
        int c = c0 + ty;  // this thread's row of dX
        T total = 0;
        for (int i0 = 0; i0 < KRS; i0 += TILE) {
            int krs = i0 + tx;  // w[k, c, r, s] for krs = (k, r, s)
            w_tile[ty][tx] =
                (c < g.C && krs < KRS) ? w[(krs / RS * g.C + c) * RS + krs % RS] : T(0);
            unravel3(i0 + ty, g.R, g.S, k, r, s);
            dy_tile[ty][tx] = (i0 + ty < KRS && nhw < NHW)
                                  ? dy_reaching(dy, g, n, k, h, v, r, s)
                                  : T(0);
            __syncthreads();
            for (int i = 0; i < TILE; ++i) total += w_tile[ty][i] * dy_tile[i][tx];
            __syncthreads();
        }
        if (c < g.C && nhw < NHW) dx[((n * g.C + c) * g.H + h) * g.W + v] = total;
    }
}

// The npq range [first, end) of slice z of a sum of NPQ terms cut into slices of slice_length.
// (Written as a comparison, not first + slice_length, so that nothing can overflow an int.)
__device__ void slice_range(int z, int slice_length, int NPQ, int& first, int& end) {
    first = z * slice_length;
    end = NPQ - first <= slice_length ? NPQ : first + slice_length;
}

template <typename T>
__device__ void dw_tiled(const T* dy, const T* x, T* partial, ConvShape g, int slice_length) {
    // partial[z][k][crs] = sum_{npq in slice z} dY[k, npq] * X_col[crs, npq]  (grid.z = slice)
    __shared__ T dy_tile[TILE][TILE];  // dY[this block's k, npq slice]
    __shared__ T x_tile[TILE][TILE];   // X_col[this block's crs, npq slice], transposed
    int tx = threadIdx.x, ty = threadIdx.y;
    int crs = blockIdx.x * TILE + tx;  // this thread's column of dW
    int CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q;
    int first, end;
    slice_range(blockIdx.z, slice_length, NPQ, first, end);
    int c, r, s, n, p, q;
    unravel3(crs, g.R, g.S, c, r, s);
    for (int k0 = blockIdx.y * TILE; k0 < g.K; k0 += gridDim.y * TILE) {  // row tiles of dW
        int k = k0 + ty;  // this thread's row of dW
        T total = 0;
        for (int i0 = first; i0 < end; i0 += TILE) {
            unravel3(i0 + tx, g.P, g.Q, n, p, q);
            dy_tile[ty][tx] = (k < g.K && i0 + tx < end)
                                  ? dy[((n * g.K + k) * g.P + p) * g.Q + q]
                                  : T(0);
            unravel3(i0 + ty, g.P, g.Q, n, p, q);
            x_tile[ty][tx] = (i0 + ty < end && crs < CRS)
                                 ? x_padded(x, g, n, c, p * g.sh + r, q * g.sw + s)
                                 : T(0);
            __syncthreads();
            for (int i = 0; i < TILE; ++i) total += dy_tile[ty][i] * x_tile[i][tx];
            __syncthreads();
        }
        // partial is (slices, K, CRS); with one slice it is dw itself (a K x CRS matrix)
        if (k < g.K && crs < CRS) partial[(blockIdx.z * g.K + k) * CRS + crs] = total;
    }
}

// partial[z][k] = the sum of dy over channel k and slice z of npq, by block (k, z): each thread
// sums a strided share of the slice (consecutive threads read consecutive addresses), then the
// block adds the THREADS partial sums pairwise.
template <typename T>
__device__ void db_tiled(const T* dy, T* partial, int N, int K, int PQ, int slice_length) {
    __shared__ T sums[THREADS];
    int k = blockIdx.x, t = threadIdx.x;
    int first, end;
    slice_range(blockIdx.y, slice_length, N * PQ, first, end);
    T total = 0;
    for (int npq = first + t; npq < end; npq += THREADS)
        total += dy[(npq / PQ * K + k) * PQ + npq % PQ];
    sums[t] = total;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) sums[t] += sums[t + half];
        __syncthreads();  // this level's sums are written before the next level reads them
    }
    if (t == 0) partial[blockIdx.y * K + k] = sums[0];
}

// The second pass of dw and db: out[i] = sum_z partial[z][i], z = 0, 1, ..., slices - 1 in
// this order, whatever order the blocks of the first pass ran in: the same bits every run.
// One thread per output element; consecutive threads read consecutive addresses.
template <typename T>
__device__ void sum_slices(const T* partial, T* out, int n, int slices) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T total = 0;
    for (int z = 0; z < slices; ++z) total += partial[z * n + i];
    out[i] = total;
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------
// The launchers (cupy's get_function, the emulation's generated emu_launch_*) find kernels by
// these plain extern "C" names, written out rather than generated by a macro so that a reader
// (and the emulation's parser) sees every signature. Every convolution kernel takes the same
// sizes: N, C, H, W (x), K, R, S (w), the stride and the padding.

extern "C" __global__ void conv2d_forward_naive_f32(const float* x, const float* w, const float* b, float* y, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    forward_naive<float>(x, w, b, y, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_forward_naive_f64(const double* x, const double* w, const double* b, double* y, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    forward_naive<double>(x, w, b, y, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dx_naive_f32(const float* dy, const float* w, float* dx, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    dx_naive<float>(dy, w, dx, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dx_naive_f64(const double* dy, const double* w, double* dx, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    dx_naive<double>(dy, w, dx, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dw_naive_f32(const float* dy, const float* x, float* dw, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    dw_naive<float>(dy, x, dw, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dw_naive_f64(const double* dy, const double* x, double* dw, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    dw_naive<double>(dy, x, dw, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_db_naive_f32(const float* dy, float* db, int N, int K, int PQ) {
    db_naive<float>(dy, db, N, K, PQ);
}
extern "C" __global__ void conv2d_db_naive_f64(const double* dy, double* db, int N, int K, int PQ) {
    db_naive<double>(dy, db, N, K, PQ);
}
extern "C" __global__ void conv2d_forward_tiled_f32(const float* x, const float* w, const float* b, float* y, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    forward_tiled<float>(x, w, b, y, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_forward_tiled_f64(const double* x, const double* w, const double* b, double* y, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    forward_tiled<double>(x, w, b, y, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dx_tiled_f32(const float* dy, const float* w, float* dx, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    dx_tiled<float>(dy, w, dx, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dx_tiled_f64(const double* dy, const double* w, double* dx, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw) {
    dx_tiled<double>(dy, w, dx, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw));
}
extern "C" __global__ void conv2d_dw_tiled_f32(const float* dy, const float* x, float* partial, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw, int slice_length) {
    dw_tiled<float>(dy, x, partial, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw), slice_length);
}
extern "C" __global__ void conv2d_dw_tiled_f64(const double* dy, const double* x, double* partial, int N, int C, int H, int W, int K, int R, int S, int sh, int sw, int ph, int pw, int slice_length) {
    dw_tiled<double>(dy, x, partial, conv_shape(N, C, H, W, K, R, S, sh, sw, ph, pw), slice_length);
}
extern "C" __global__ void conv2d_db_tiled_f32(const float* dy, float* partial, int N, int K, int PQ, int slice_length) {
    db_tiled<float>(dy, partial, N, K, PQ, slice_length);
}
extern "C" __global__ void conv2d_sum_slices_tiled_f32(const float* partial, float* out, int n, int slices) {
    sum_slices<float>(partial, out, n, slices);
}
extern "C" __global__ void conv2d_db_tiled_f64(const double* dy, double* partial, int N, int K, int PQ, int slice_length) {
    db_tiled<double>(dy, partial, N, K, PQ, slice_length);
}
extern "C" __global__ void conv2d_sum_slices_tiled_f64(const double* partial, double* out, int n, int slices) {
    sum_slices<double>(partial, out, n, slices);
}
