// rnn.cu — the gate arithmetic of the recurrent cells (tanh-RNN, LSTM, GRU), one time step.
//
// Shapes:  x (B, I)   h, c, h_new, c_new, hn (B, H)   w_ih (G*H, I)   w_hh (G*H, H)
//          b_ih, b_hh (G*H)   gi, gh, gates, da (B, G*H)
//   G = 1 (tanh-RNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: r, z, n), stacked as in PyTorch.
//   Every array is row-major and contiguous: element [b, k] of a (B, G*H) array is at
//   b * G*H + k, and gate g of hidden unit j is column g * H + j.
//
// A cell is two GEMMs, linear.cu's matmul launched by rnn/cuda_c.py,
//     gi = x @ w_ih.T        gh = h @ w_hh.T                             (B, G*H)
// and the elementwise gate math of this file (sigma(a) = 1 / (1 + exp(-a))):
//   tanh-RNN  h_new = tanh(gi + b_ih + gh + b_hh)
//   LSTM      [i, f, g, o] = [sigma, sigma, tanh, sigma](gi + b_ih + gh + b_hh)
//             c_new = f * c + i * g,   h_new = o * tanh(c_new)
//   GRU       r = sigma(gi_r + gh_r),  z = sigma(gi_z + gh_z)   (each with its biases)
//             hn = gh_n + b_hn,  n = tanh(gi_n + b_in + r * hn),  h_new = (1 - z) * n + z * h
// The backward runs the gate math in reverse (sigma' = s (1 - s), tanh' = 1 - t^2 of the values
// the forward cached) to the gradients of the pre-activations da_x, da_h (B, G*H); linear.cu
// then gives dx = da_x @ w_ih, dh = da_h @ w_hh, dw_ih = da_x^T @ x, dw_hh = da_h^T @ h and
// db = column sums. (da_x = da_h except in the GRU, where r scales the hidden part of n, and
// the GRU's dh also gets the direct path dh_new * z, added after the GEMM by gru_direct_path.)
//
// Versions (rnn/cuda_c.py picks the kernels and the matmul):
//   naive  the GEMMs with matmul_naive; the gate math as a chain of small kernels, one per
//          intermediate array of the reference (sum and activate the gates, then update the
//          state; backward: dc_total, then da, then dc), one thread per array element. Every
//          intermediate makes a round trip through global memory between two launches.
//   fused  the GEMMs with matmul_tiled; ALL the gate math of a cell in ONE kernel per
//          direction (*_forward_fused, *_backward_fused): one thread per hidden unit (b, j)
//          reads the G pre-activations of its unit, keeps every intermediate in registers and
//          writes only what the cell returns or caches. Elementwise work is memory-bound, so
//          touching each value once, in one launch, is the whole speed-up.
// Every kernel is one thread per item on a 1-D grid: consecutive threads take consecutive
// columns, so their loads and stores coalesce.
//
// Indices are int, as in conv2d.cu: every array must stay below 2^31 elements; the host code
// (cuda_c.py) refuses larger ones from their shapes, before it copies or allocates anything
// (grids.check_int_indices).
//
// Every kernel exists for float (suffix _f32) and double (_f64): the body is a template, the
// extern "C" entry points at the bottom give the launchers plain names.
// Build check:  nvcc -ptx -arch=sm_75 kernels/rnn/rnn.cu -o /tmp/rnn.ptx
// Run on a GPU through CuPy (NVRTC); tested on the CPU through runtime/cuda_emu.h (g++).

// exp and tanh in the precision of T. CUDA device code and C++ (<cmath>) both have expf/exp and
// tanhf/tanh; these overloads pick the float or double one, so float math stays in float.
__device__ inline float exp_of(float a) { return expf(a); }
__device__ inline double exp_of(double a) { return exp(a); }
__device__ inline float tanh_of(float a) { return tanhf(a); }
__device__ inline double tanh_of(double a) { return tanh(a); }

// 1 / (1 + exp(-a)) without overflow: exp is only ever taken of -|a|, which is <= 0.
template <typename T>
__device__ T sigmoid(T a) {
    T e = exp_of(a >= T(0) ? -a : a);
    return a >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// The index of this thread on the 1-D grid.
__device__ inline int thread_index() { return blockIdx.x * blockDim.x + threadIdx.x; }

// ---------------------------------------------------------------------------------------------
// naive: one small kernel per intermediate array, one thread per element
// ---------------------------------------------------------------------------------------------

// gates[b, k] = act(gi[b, k] + gh[b, k]) for the first `cols` columns of (B, ld) arrays, with
// act = tanh for the gate k / H == tanh_gate, sigma otherwise (tanh_gate = -1: no tanh gate).
// The biases are already in gi and gh.
template <typename T>
__device__ void sum_activate(const T* gi, const T* gh, T* gates, int B, int ld, int cols, int H,
                             int tanh_gate) {
    int i = thread_index();
    if (i >= B * cols) return;
    int at = (i / cols) * ld + i % cols;
    T a = gi[at] + gh[at];
    gates[at] = (i % cols) / H == tanh_gate ? tanh_of(a) : sigmoid(a);
}

// LSTM: c_new = f * c + i * g,  tanh_c_new = tanh(c_new),  h_new = o * tanh_c_new.
template <typename T>
__device__ void lstm_state(const T* gates, const T* c, T* c_new, T* tanh_c_new, T* h_new, int B,
                           int H) {
    int i = thread_index();
    if (i >= B * H) return;
    const T* unit = gates + (i / H) * 4 * H + i % H;  // unit[g * H] is gate g of this unit
    T c_next = unit[H] * c[i] + unit[0] * unit[2 * H];
    T t = tanh_of(c_next);
    c_new[i] = c_next;
    tanh_c_new[i] = t;
    h_new[i] = unit[3 * H] * t;
}

// GRU: n = tanh(gi_n + r * gh_n) into the n block of gates; r scales the hidden part only.
template <typename T>
__device__ void gru_candidate(const T* gi, const T* gh, T* gates, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int at = (i / H) * 3 * H + i % H;  // column j of row b: gate r; + H: z; + 2H: n
    gates[at + 2 * H] = tanh_of(gi[at + 2 * H] + gates[at] * gh[at + 2 * H]);
}

// GRU: h_new = (1 - z) * n + z * h.
template <typename T>
__device__ void gru_state(const T* gates, const T* h, T* h_new, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int at = (i / H) * 3 * H + i % H;
    T z = gates[at + H], n = gates[at + 2 * H];
    h_new[i] = (T(1) - z) * n + z * h[i];
}

// LSTM: dc_total = dc_new + dh_new * o * (1 - tanh_c_new^2): c_new reaches the loss two ways.
template <typename T>
__device__ void lstm_dc_total(const T* dh_new, const T* dc_new, const T* gates,
                              const T* tanh_c_new, T* dc_total, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    T o = gates[(i / H) * 4 * H + 3 * H + i % H], t = tanh_c_new[i];
    dc_total[i] = dc_new[i] + dh_new[i] * o * (T(1) - t * t);
}

// LSTM: da (B, 4H), the gradient of each pre-activation, by the gate its column belongs to.
template <typename T>
__device__ void lstm_gate_grads(const T* dc_total, const T* dh_new, const T* c, const T* gates,
                                const T* tanh_c_new, T* da, int B, int H) {
    int i = thread_index();
    if (i >= B * 4 * H) return;
    int b = i / (4 * H), gate = (i % (4 * H)) / H, j = i % H;
    int unit = b * H + j;             // index into the (B, H) arrays
    const T* row = gates + b * 4 * H;  // row[g * H + j] is gate g of this unit
    T s = gates[i];                    // this gate's activated value
    if (gate == 0)  // i: dc_total * g * sigma'
        da[i] = dc_total[unit] * row[2 * H + j] * s * (T(1) - s);
    else if (gate == 1)  // f: dc_total * c * sigma'
        da[i] = dc_total[unit] * c[unit] * s * (T(1) - s);
    else if (gate == 2)  // g: dc_total * i * tanh'
        da[i] = dc_total[unit] * row[j] * (T(1) - s * s);
    else  // o: dh_new * tanh(c_new) * sigma'
        da[i] = dh_new[unit] * tanh_c_new[unit] * s * (T(1) - s);
}

// LSTM: dc = dc_total * f, the gradient reaching the previous cell state.
template <typename T>
__device__ void lstm_dc(const T* dc_total, const T* gates, T* dc, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    dc[i] = dc_total[i] * gates[(i / H) * 4 * H + H + i % H];
}

// GRU: da_n = dh_new (1 - z)(1 - n^2) and da_z = dh_new (h - n) z (1 - z), into da_x (B, 3H).
template <typename T>
__device__ void gru_candidate_update_grads(const T* dh_new, const T* h, const T* gates, T* da_x,
                                           int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int at = (i / H) * 3 * H + i % H;
    T z = gates[at + H], n = gates[at + 2 * H];
    da_x[at + 2 * H] = dh_new[i] * (T(1) - z) * (T(1) - n * n);
    da_x[at + H] = dh_new[i] * (h[i] - n) * z * (T(1) - z);
}

// GRU: da_r = da_n * hn * r (1 - r), into the r block of da_x (da_n is already in its n block).
template <typename T>
__device__ void gru_reset_grad(const T* hn, const T* gates, T* da_x, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int at = (i / H) * 3 * H + i % H;
    T r = gates[at];
    da_x[at] = da_x[at + 2 * H] * hn[i] * r * (T(1) - r);
}

// GRU: da_h = da_x, except the n block times r (r scales the hidden part of n).   (B, 3H)
template <typename T>
__device__ void gru_hidden_grads(const T* da_x, const T* gates, T* da_h, int B, int H) {
    int i = thread_index();
    if (i >= B * 3 * H) return;
    int k = i % (3 * H);
    da_h[i] = k < 2 * H ? da_x[i] : da_x[i] * gates[i - 2 * H];  // i - 2H: r of the same unit
}

// ---------------------------------------------------------------------------------------------
// Kernels both versions use
// ---------------------------------------------------------------------------------------------

// tanh-RNN: da = dh_new * (1 - h_new^2), the cell's whole elementwise backward.
template <typename T>
__device__ void rnn_backward(const T* dh_new, const T* h_new, T* da, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    da[i] = dh_new[i] * (T(1) - h_new[i] * h_new[i]);
}

// GRU: dh += dh_new * z, the path h -> z * h that bypasses the GEMM dh = da_h @ w_hh.
template <typename T>
__device__ void gru_direct_path(T* dh, const T* dh_new, const T* gates, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    dh[i] += dh_new[i] * gates[(i / H) * 3 * H + H + i % H];
}

// ---------------------------------------------------------------------------------------------
// fused: all the gate math of a cell in one kernel per direction, one thread per unit (b, j)
// ---------------------------------------------------------------------------------------------

// tanh-RNN: h_new = tanh(gi + b_ih + gh + b_hh).
template <typename T>
__device__ void rnn_forward_fused(const T* gi, const T* gh, const T* b_ih, const T* b_hh,
                                  T* h_new, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int j = i % H;
    h_new[i] = tanh_of(gi[i] + b_ih[j] + gh[i] + b_hh[j]);
}

// LSTM: 4 pre-activations in; gates (B, 4H), c_new, tanh_c_new, h_new (B, H) out.
template <typename T>
__device__ void lstm_forward_fused(const T* gi, const T* gh, const T* b_ih, const T* b_hh,
                                   const T* c, T* gates, T* c_new, T* tanh_c_new, T* h_new, int B,
                                   int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int j = i % H;
    int row = (i / H) * 4 * H;  // start of this unit's row in the (B, 4H) arrays
    T a[4];                     // pre-activations of gates i, f, g, o: column g * H + j
    for (int g = 0; g < 4; ++g)
        a[g] = gi[row + g * H + j] + b_ih[g * H + j] + gh[row + g * H + j] + b_hh[g * H + j];
    T in = sigmoid(a[0]), forget = sigmoid(a[1]), cand = tanh_of(a[2]), out = sigmoid(a[3]);
    T c_next = forget * c[i] + in * cand;
    T t = tanh_of(c_next);
    gates[row + j] = in;
    gates[row + H + j] = forget;
    gates[row + 2 * H + j] = cand;
    gates[row + 3 * H + j] = out;
    c_new[i] = c_next;
    tanh_c_new[i] = t;
    h_new[i] = out * t;
}

// GRU: gi, gh (B, 3H) in; gates (B, 3H), hn and h_new (B, H) out.
template <typename T>
__device__ void gru_forward_fused(const T* gi, const T* gh, const T* b_ih, const T* b_hh,
                                  const T* h, T* gates, T* hn, T* h_new, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int j = i % H;
    int at = (i / H) * 3 * H + j;  // column j of this row: r; + H: z; + 2H: n
    T r = sigmoid(gi[at] + b_ih[j] + gh[at] + b_hh[j]);
    T z = sigmoid(gi[at + H] + b_ih[H + j] + gh[at + H] + b_hh[H + j]);
    T hidden_n = gh[at + 2 * H] + b_hh[2 * H + j];  // cached: the backward of r needs it
    T n = tanh_of(gi[at + 2 * H] + b_ih[2 * H + j] + r * hidden_n);
    gates[at] = r;
    gates[at + H] = z;
    gates[at + 2 * H] = n;
    hn[i] = hidden_n;
    h_new[i] = (T(1) - z) * n + z * h[i];
}

// LSTM backward: da (B, 4H) and dc (B, H) from dh_new, dc_new and the cache.
template <typename T>
__device__ void lstm_backward_fused(const T* dh_new, const T* dc_new, const T* c, const T* gates,
                                    const T* tanh_c_new, T* da, T* dc, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int at = (i / H) * 4 * H + i % H;  // gate g of this unit is at + g * H
    T in = gates[at], forget = gates[at + H], cand = gates[at + 2 * H], out = gates[at + 3 * H];
    T t = tanh_c_new[i];
    // c_new reaches the loss directly (dc_new) and through h_new = o * tanh(c_new).
    T dc_total = dc_new[i] + dh_new[i] * out * (T(1) - t * t);
    da[at] = dc_total * cand * in * (T(1) - in);
    da[at + H] = dc_total * c[i] * forget * (T(1) - forget);
    da[at + 2 * H] = dc_total * in * (T(1) - cand * cand);
    da[at + 3 * H] = dh_new[i] * t * out * (T(1) - out);
    dc[i] = dc_total * forget;
}

// GRU backward: da_x, da_h (B, 3H) from dh_new and the cache.
template <typename T>
__device__ void gru_backward_fused(const T* dh_new, const T* h, const T* gates, const T* hn,
                                   T* da_x, T* da_h, int B, int H) {
    int i = thread_index();
    if (i >= B * H) return;
    int at = (i / H) * 3 * H + i % H;
    T r = gates[at], z = gates[at + H], n = gates[at + 2 * H];
    T da_n = dh_new[i] * (T(1) - z) * (T(1) - n * n);
    T da_z = dh_new[i] * (h[i] - n) * z * (T(1) - z);
    T da_r = da_n * hn[i] * r * (T(1) - r);
    da_x[at] = da_r;
    da_x[at + H] = da_z;
    da_x[at + 2 * H] = da_n;
    da_h[at] = da_r;
    da_h[at + H] = da_z;
    da_h[at + 2 * H] = da_n * r;  // r multiplies the hidden part of n only
}

// ---------------------------------------------------------------------------------------------
// Entry points. The launchers (cupy's get_function, the emulation's generated emu_launch_*)
// find kernels by these plain extern "C" names, written out rather than generated by a macro
// so that a reader (and the emulation's parser) sees every signature.
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void sum_activate_f32(const float* gi, const float* gh, float* gates, int B, int ld, int cols, int H, int tanh_gate) {
    sum_activate<float>(gi, gh, gates, B, ld, cols, H, tanh_gate);
}
extern "C" __global__ void sum_activate_f64(const double* gi, const double* gh, double* gates, int B, int ld, int cols, int H, int tanh_gate) {
    sum_activate<double>(gi, gh, gates, B, ld, cols, H, tanh_gate);
}
extern "C" __global__ void lstm_state_f32(const float* gates, const float* c, float* c_new, float* tanh_c_new, float* h_new, int B, int H) {
    lstm_state<float>(gates, c, c_new, tanh_c_new, h_new, B, H);
}
extern "C" __global__ void lstm_state_f64(const double* gates, const double* c, double* c_new, double* tanh_c_new, double* h_new, int B, int H) {
    lstm_state<double>(gates, c, c_new, tanh_c_new, h_new, B, H);
}
extern "C" __global__ void gru_candidate_f32(const float* gi, const float* gh, float* gates, int B, int H) {
    gru_candidate<float>(gi, gh, gates, B, H);
}
extern "C" __global__ void gru_candidate_f64(const double* gi, const double* gh, double* gates, int B, int H) {
    gru_candidate<double>(gi, gh, gates, B, H);
}
extern "C" __global__ void gru_state_f32(const float* gates, const float* h, float* h_new, int B, int H) {
    gru_state<float>(gates, h, h_new, B, H);
}
extern "C" __global__ void gru_state_f64(const double* gates, const double* h, double* h_new, int B, int H) {
    gru_state<double>(gates, h, h_new, B, H);
}
extern "C" __global__ void lstm_dc_total_f32(const float* dh_new, const float* dc_new, const float* gates, const float* tanh_c_new, float* dc_total, int B, int H) {
    lstm_dc_total<float>(dh_new, dc_new, gates, tanh_c_new, dc_total, B, H);
}
extern "C" __global__ void lstm_dc_total_f64(const double* dh_new, const double* dc_new, const double* gates, const double* tanh_c_new, double* dc_total, int B, int H) {
    lstm_dc_total<double>(dh_new, dc_new, gates, tanh_c_new, dc_total, B, H);
}
extern "C" __global__ void lstm_gate_grads_f32(const float* dc_total, const float* dh_new, const float* c, const float* gates, const float* tanh_c_new, float* da, int B, int H) {
    lstm_gate_grads<float>(dc_total, dh_new, c, gates, tanh_c_new, da, B, H);
}
extern "C" __global__ void lstm_gate_grads_f64(const double* dc_total, const double* dh_new, const double* c, const double* gates, const double* tanh_c_new, double* da, int B, int H) {
    lstm_gate_grads<double>(dc_total, dh_new, c, gates, tanh_c_new, da, B, H);
}
extern "C" __global__ void lstm_dc_f32(const float* dc_total, const float* gates, float* dc, int B, int H) {
    lstm_dc<float>(dc_total, gates, dc, B, H);
}
extern "C" __global__ void lstm_dc_f64(const double* dc_total, const double* gates, double* dc, int B, int H) {
    lstm_dc<double>(dc_total, gates, dc, B, H);
}
extern "C" __global__ void gru_candidate_update_grads_f32(const float* dh_new, const float* h, const float* gates, float* da_x, int B, int H) {
    gru_candidate_update_grads<float>(dh_new, h, gates, da_x, B, H);
}
extern "C" __global__ void gru_candidate_update_grads_f64(const double* dh_new, const double* h, const double* gates, double* da_x, int B, int H) {
    gru_candidate_update_grads<double>(dh_new, h, gates, da_x, B, H);
}
extern "C" __global__ void gru_reset_grad_f32(const float* hn, const float* gates, float* da_x, int B, int H) {
    gru_reset_grad<float>(hn, gates, da_x, B, H);
}
extern "C" __global__ void gru_reset_grad_f64(const double* hn, const double* gates, double* da_x, int B, int H) {
    gru_reset_grad<double>(hn, gates, da_x, B, H);
}
extern "C" __global__ void gru_hidden_grads_f32(const float* da_x, const float* gates, float* da_h, int B, int H) {
    gru_hidden_grads<float>(da_x, gates, da_h, B, H);
}
extern "C" __global__ void gru_hidden_grads_f64(const double* da_x, const double* gates, double* da_h, int B, int H) {
    gru_hidden_grads<double>(da_x, gates, da_h, B, H);
}
extern "C" __global__ void rnn_backward_f32(const float* dh_new, const float* h_new, float* da, int B, int H) {
    rnn_backward<float>(dh_new, h_new, da, B, H);
}
extern "C" __global__ void rnn_backward_f64(const double* dh_new, const double* h_new, double* da, int B, int H) {
    rnn_backward<double>(dh_new, h_new, da, B, H);
}
extern "C" __global__ void gru_direct_path_f32(float* dh, const float* dh_new, const float* gates, int B, int H) {
    gru_direct_path<float>(dh, dh_new, gates, B, H);
}
extern "C" __global__ void gru_direct_path_f64(double* dh, const double* dh_new, const double* gates, int B, int H) {
    gru_direct_path<double>(dh, dh_new, gates, B, H);
}
extern "C" __global__ void rnn_forward_fused_f32(const float* gi, const float* gh, const float* b_ih, const float* b_hh, float* h_new, int B, int H) {
    rnn_forward_fused<float>(gi, gh, b_ih, b_hh, h_new, B, H);
}
extern "C" __global__ void rnn_forward_fused_f64(const double* gi, const double* gh, const double* b_ih, const double* b_hh, double* h_new, int B, int H) {
    rnn_forward_fused<double>(gi, gh, b_ih, b_hh, h_new, B, H);
}
extern "C" __global__ void lstm_forward_fused_f32(const float* gi, const float* gh, const float* b_ih, const float* b_hh, const float* c, float* gates, float* c_new, float* tanh_c_new, float* h_new, int B, int H) {
    lstm_forward_fused<float>(gi, gh, b_ih, b_hh, c, gates, c_new, tanh_c_new, h_new, B, H);
}
extern "C" __global__ void lstm_forward_fused_f64(const double* gi, const double* gh, const double* b_ih, const double* b_hh, const double* c, double* gates, double* c_new, double* tanh_c_new, double* h_new, int B, int H) {
    lstm_forward_fused<double>(gi, gh, b_ih, b_hh, c, gates, c_new, tanh_c_new, h_new, B, H);
}
extern "C" __global__ void gru_forward_fused_f32(const float* gi, const float* gh, const float* b_ih, const float* b_hh, const float* h, float* gates, float* hn, float* h_new, int B, int H) {
    gru_forward_fused<float>(gi, gh, b_ih, b_hh, h, gates, hn, h_new, B, H);
}
extern "C" __global__ void gru_forward_fused_f64(const double* gi, const double* gh, const double* b_ih, const double* b_hh, const double* h, double* gates, double* hn, double* h_new, int B, int H) {
    gru_forward_fused<double>(gi, gh, b_ih, b_hh, h, gates, hn, h_new, B, H);
}
extern "C" __global__ void lstm_backward_fused_f32(const float* dh_new, const float* dc_new, const float* c, const float* gates, const float* tanh_c_new, float* da, float* dc, int B, int H) {
    lstm_backward_fused<float>(dh_new, dc_new, c, gates, tanh_c_new, da, dc, B, H);
}
extern "C" __global__ void lstm_backward_fused_f64(const double* dh_new, const double* dc_new, const double* c, const double* gates, const double* tanh_c_new, double* da, double* dc, int B, int H) {
    lstm_backward_fused<double>(dh_new, dc_new, c, gates, tanh_c_new, da, dc, B, H);
}
extern "C" __global__ void gru_backward_fused_f32(const float* dh_new, const float* h, const float* gates, const float* hn, float* da_x, float* da_h, int B, int H) {
    gru_backward_fused<float>(dh_new, h, gates, hn, da_x, da_h, B, H);
}
extern "C" __global__ void gru_backward_fused_f64(const double* dh_new, const double* h, const double* gates, const double* hn, double* da_x, double* da_h, int B, int H) {
    gru_backward_fused<double>(dh_new, h, gates, hn, da_x, da_h, B, H);
}
