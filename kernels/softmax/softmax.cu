// softmax.cu — softmax, log-softmax, their backwards, and fused softmax + cross-entropy.
//
// Every kernel works on contiguous rows: x, y, dy, dx (rows, cols), the host having moved the
// softmax axis last; logits, dlogits (rows, cols) with one target class per row.
//
//   m = max_j x_j,   softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
//   log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
//   softmax backward:      dx = y * (dy - sum_j dy_j y_j)      (y = softmax(x))
//   log_softmax backward:  dx = dy - exp(y) * sum_j dy_j        (y = log_softmax(x))
//   cross-entropy, per row:  row_loss = m + log sum_j exp(x_j - m) - x_target
//                            dlogits  = softmax(x) - onehot(target)
//                            (both 0 on a row whose target == ignore_index; targets long long;
//                            the host code takes the mean over the M kept rows, dividing both
//                            by M on the device: M is never read back to the host)
// Shifting by the row's max m keeps exp from overflowing (the shift cancels in the ratio).
// The flag log_output picks log_softmax over softmax in the forward and backward kernels.
//
// Every row needs reductions (a max, a sum) before any output can be written. Versions:
//   *_naive  one thread per row, looping over the whole row alone. Simple; but a row of a
//            10 000-word vocabulary is 10 000 sequential steps, and a batch of 32 rows keeps
//            only 32 threads of the GPU busy.
//   *_block  one block of THREADS threads per row (grid = rows). Thread t strides over the row
//            (elements t, t + THREADS, ...) keeping a partial max or sum; the partials go to
//            shared memory and a tree reduction combines them: at each step the first half of
//            the active threads folds in the second half's values, and __syncthreads() makes
//            those values visible before the next step reads them. log2(THREADS) steps.
// The cross-entropy kernels fuse softmax, the row's loss and its gradient: probabilities are
// written straight into dlogits, and the softmax Jacobian is never formed.
//
// Indices are int, as in conv2d.cu: every array must stay below 2^31 elements; the host code
// (cuda_c.py) refuses larger ones from their shapes, before it copies or allocates anything
// (grids.check_int_indices).
//
// Every kernel exists for float (suffix _f32) and double (_f64): the body is a template, the
// extern "C" entry points give the launchers plain names. Build check:
//   nvcc -ptx -arch=sm_75 softmax.cu -o softmax.ptx
// Tested on the CPU through runtime/cuda_emu.h (g++), run on a GPU through CuPy.

#define THREADS 256  // threads per block of the *_block kernels; a power of two (the tree
                     // halves it); must equal THREADS in cuda_c.py

// exp and log for both element types. expf/logf are the float functions in CUDA and in the C
// library alike; naming them keeps float kernels in float under g++ too (where the global
// exp() takes a double).
__device__ __forceinline__ float exp_t(float v) { return expf(v); }
__device__ __forceinline__ double exp_t(double v) { return exp(v); }
__device__ __forceinline__ float log_t(float v) { return logf(v); }
__device__ __forceinline__ double log_t(double v) { return log(v); }

// ---------------------------------------------------------------------------------------------
// naive: one thread per row
// ---------------------------------------------------------------------------------------------

// The row's max m, and sum_j exp(row[j] - m) in *total.
template <typename T>
__device__ T row_max_and_sum(const T* row, int cols, T* total) {
    T m = row[0];
    for (int j = 1; j < cols; ++j) m = row[j] > m ? row[j] : m;
    T sum = 0;
    for (int j = 0; j < cols; ++j) sum += exp_t(row[j] - m);
    *total = sum;
    return m;
}

template <typename T>
__device__ void softmax_rows_naive(const T* x, T* out, int rows, int cols, int log_output) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const T* row = x + (long long)r * cols;
    T* out_row = out + (long long)r * cols;
    T total;
    T m = row_max_and_sum(row, cols, &total);
    for (int j = 0; j < cols; ++j)
        out_row[j] = log_output ? row[j] - m - log_t(total) : exp_t(row[j] - m) / total;
}

template <typename T>
__device__ void softmax_backward_rows_naive(const T* dy, const T* y, T* dx, int rows, int cols,
                                            int log_output) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    long long start = (long long)r * cols;
    T total = 0;
    for (int j = 0; j < cols; ++j) total += log_output ? dy[start + j] : dy[start + j] * y[start + j];
    for (int j = 0; j < cols; ++j) {
        long long i = start + j;
        dx[i] = log_output ? dy[i] - exp_t(y[i]) * total : y[i] * (dy[i] - total);
    }
}

template <typename T>
__device__ void cross_entropy_rows_naive(const T* logits, const long long* targets,
                                         long long ignore_index, T* dlogits,
                                         T* row_loss, int rows, int cols) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const T* row = logits + (long long)r * cols;
    T* d_row = dlogits + (long long)r * cols;
    long long target = targets[r];
    if (target == ignore_index) {  // padding: no loss, no gradient
        for (int j = 0; j < cols; ++j) d_row[j] = 0;
        row_loss[r] = 0;
        return;
    }
    T total;
    T m = row_max_and_sum(row, cols, &total);
    row_loss[r] = m + log_t(total) - row[target];
    for (int j = 0; j < cols; ++j)
        d_row[j] = exp_t(row[j] - m) / total - (j == target ? T(1) : T(0));
}

// ---------------------------------------------------------------------------------------------
// block: one block per row, shared-memory tree reductions
// ---------------------------------------------------------------------------------------------

// The max (or sum) of every thread's `value`, returned to every thread of the block.
// partial is a shared array of THREADS elements. At each step thread t < half combines
// partial[t] with partial[t + half]; the __syncthreads() after the step guarantees that those
// results are written before the next step's threads read them.
template <typename T>
__device__ T block_max(T* partial, T value) {
    int t = threadIdx.x;
    partial[t] = value;
    __syncthreads();  // every partial written before anyone combines them
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) partial[t] = partial[t + half] > partial[t] ? partial[t + half] : partial[t];
        __syncthreads();
    }
    T result = partial[0];
    __syncthreads();  // everyone has read partial[0] before a next reduction overwrites it
    return result;
}

template <typename T>
__device__ T block_sum(T* partial, T value) {
    int t = threadIdx.x;
    partial[t] = value;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    T result = partial[0];
    __syncthreads();
    return result;
}

// The row's max m, and sum_j exp(row[j] - m) in *total, by the whole block.
template <typename T>
__device__ T block_row_max_and_sum(const T* row, int cols, T* partial, T* total) {
    int t = threadIdx.x;
    T m = row[0];  // row[0] is in the row: a correct start for every thread's partial max
    for (int j = t; j < cols; j += THREADS) m = row[j] > m ? row[j] : m;
    m = block_max(partial, m);
    T sum = 0;
    for (int j = t; j < cols; j += THREADS) sum += exp_t(row[j] - m);
    *total = block_sum(partial, sum);
    return m;
}

template <typename T>
__device__ void softmax_rows_block(const T* x, T* out, int rows, int cols, int log_output) {
    __shared__ T partial[THREADS];
    int r = blockIdx.x;
    if (r >= rows) return;  // grid = rows: block r owns row r (a whole block returns)
    const T* row = x + (long long)r * cols;
    T* out_row = out + (long long)r * cols;
    T total;
    T m = block_row_max_and_sum(row, cols, partial, &total);
    for (int j = threadIdx.x; j < cols; j += THREADS)
        out_row[j] = log_output ? row[j] - m - log_t(total) : exp_t(row[j] - m) / total;
}

template <typename T>
__device__ void softmax_backward_rows_block(const T* dy, const T* y, T* dx, int rows, int cols,
                                            int log_output) {
    __shared__ T partial[THREADS];
    int r = blockIdx.x;
    if (r >= rows) return;  // grid = rows: block r owns row r (a whole block returns)
    long long start = (long long)r * cols;
    T total = 0;
    for (int j = threadIdx.x; j < cols; j += THREADS)
        total += log_output ? dy[start + j] : dy[start + j] * y[start + j];
    total = block_sum(partial, total);
    for (int j = threadIdx.x; j < cols; j += THREADS) {
        long long i = start + j;
        dx[i] = log_output ? dy[i] - exp_t(y[i]) * total : y[i] * (dy[i] - total);
    }
}

template <typename T>
__device__ void cross_entropy_rows_block(const T* logits, const long long* targets,
                                         long long ignore_index, T* dlogits,
                                         T* row_loss, int rows, int cols) {
    __shared__ T partial[THREADS];
    int r = blockIdx.x, t = threadIdx.x;
    if (r >= rows) return;  // grid = rows: block r owns row r (a whole block returns)
    const T* row = logits + (long long)r * cols;
    T* d_row = dlogits + (long long)r * cols;
    long long target = targets[r];
    if (target == ignore_index) {  // the whole block returns here: no thread misses a sync
        for (int j = t; j < cols; j += THREADS) d_row[j] = 0;
        if (t == 0) row_loss[r] = 0;
        return;
    }
    T total;
    T m = block_row_max_and_sum(row, cols, partial, &total);
    for (int j = t; j < cols; j += THREADS)
        d_row[j] = exp_t(row[j] - m) / total - (j == target ? T(1) : T(0));
    if (t == 0) row_loss[r] = m + log_t(total) - row[target];
}

// The launchers (cupy's get_function, the emulation's generated emu_launch_*) find kernels by
// these plain extern "C" names, written out rather than generated by a macro so that a reader
// (and the emulation's parser) sees every signature.
extern "C" __global__ void softmax_rows_naive_f32(const float* x, float* out, int rows, int cols, int log_output) {
    softmax_rows_naive<float>(x, out, rows, cols, log_output);
}
extern "C" __global__ void softmax_rows_naive_f64(const double* x, double* out, int rows, int cols, int log_output) {
    softmax_rows_naive<double>(x, out, rows, cols, log_output);
}
extern "C" __global__ void softmax_rows_block_f32(const float* x, float* out, int rows, int cols, int log_output) {
    softmax_rows_block<float>(x, out, rows, cols, log_output);
}
extern "C" __global__ void softmax_rows_block_f64(const double* x, double* out, int rows, int cols, int log_output) {
    softmax_rows_block<double>(x, out, rows, cols, log_output);
}
extern "C" __global__ void softmax_backward_rows_naive_f32(const float* dy, const float* y, float* dx, int rows, int cols, int log_output) {
    softmax_backward_rows_naive<float>(dy, y, dx, rows, cols, log_output);
}
extern "C" __global__ void softmax_backward_rows_naive_f64(const double* dy, const double* y, double* dx, int rows, int cols, int log_output) {
    softmax_backward_rows_naive<double>(dy, y, dx, rows, cols, log_output);
}
extern "C" __global__ void softmax_backward_rows_block_f32(const float* dy, const float* y, float* dx, int rows, int cols, int log_output) {
    softmax_backward_rows_block<float>(dy, y, dx, rows, cols, log_output);
}
extern "C" __global__ void softmax_backward_rows_block_f64(const double* dy, const double* y, double* dx, int rows, int cols, int log_output) {
    softmax_backward_rows_block<double>(dy, y, dx, rows, cols, log_output);
}
extern "C" __global__ void cross_entropy_rows_naive_f32(const float* logits, const long long* targets, long long ignore_index, float* dlogits, float* row_loss, int rows, int cols) {
    cross_entropy_rows_naive<float>(logits, targets, ignore_index, dlogits, row_loss, rows, cols);
}
extern "C" __global__ void cross_entropy_rows_naive_f64(const double* logits, const long long* targets, long long ignore_index, double* dlogits, double* row_loss, int rows, int cols) {
    cross_entropy_rows_naive<double>(logits, targets, ignore_index, dlogits, row_loss, rows, cols);
}
extern "C" __global__ void cross_entropy_rows_block_f32(const float* logits, const long long* targets, long long ignore_index, float* dlogits, float* row_loss, int rows, int cols) {
    cross_entropy_rows_block<float>(logits, targets, ignore_index, dlogits, row_loss, rows, cols);
}
extern "C" __global__ void cross_entropy_rows_block_f64(const double* logits, const long long* targets, long long ignore_index, double* dlogits, double* row_loss, int rows, int cols) {
    cross_entropy_rows_block<double>(logits, targets, ignore_index, dlogits, row_loss, rows, cols);
}
