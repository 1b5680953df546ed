// Softmax and fused softmax + cross-entropy over the last axis of
// logits [rows, k], with integer class labels, mean over the batch.
//
// Math, for row r with logits z and label t = labels[r]:
//   m          = max_j z_j                      (for a stable exponent)
//   lse        = m + log(sum_j exp(z_j - m))    (log-sum-exp)
//   p_j        = exp(z_j - lse)                 (softmax, saved for the backward pass)
//   loss_r     = lse - z_t                      (= -log p_t)
//   loss       = (1 / rows) * sum_r loss_r      (mean_f32, a fixed-order sum)
//   dlogits_rj = (p_j - [j == t]) * dloss / rows
// Softmax alone (softmax_forward_f32) has y = p and, for an upstream dy,
//   dx_j = y_j * (dy_j - sum_k dy_k y_k)       (softmax_backward_f32)
// dloss is read from device memory, so the upstream gradient never has to
// visit the host. A label outside [0, k) gives loss_r = NaN (the host rejects
// such labels before launching; this is a second line of defence).
//
// Launch geometry:
//   softmax_forward_f32, softmax_backward_f32, softmax_cross_entropy_forward_f32: one warp per row;
//     block (32, 4) = 4 rows per block, grid ceil(rows / 4). Lane l of the
//     warp handles columns l, l + 32, ...; max and sum are combined across
//     the warp with shuffles (butterfly: every lane ends with the result).
//   mean_f32: a single block of 256 threads (grid 1): each thread sums a
//     strided slice in order, then a shared-memory tree; deterministic.
//   softmax_cross_entropy_backward_f32: 1-D grid-stride loop over rows * k.

__device__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

__device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// The log-sum-exp of one row, computed by the 32 lanes of a warp.
__device__ float row_logsumexp(const float* z, unsigned int k) {
    float m = __int_as_float(0xff800000);  // -inf (no math.h under NVRTC)
    for (unsigned int j = threadIdx.x; j < k; j += 32) m = fmaxf(m, z[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < k; j += 32) s += expf(z[j] - m);
    s = warp_sum(s);
    return m + logf(s);
}

extern "C" __global__ void softmax_forward_f32(const float* x, float* y, unsigned int rows,
                                               unsigned int k) {
    unsigned int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;  // whole warp leaves together: shuffles stay full-warp
    const float* z = x + (unsigned long long)r * k;
    float lse = row_logsumexp(z, k);
    for (unsigned int j = threadIdx.x; j < k; j += 32)
        y[(unsigned long long)r * k + j] = expf(z[j] - lse);
}

extern "C" __global__ void softmax_backward_f32(const float* y, const float* dy, float* dx,
                                                unsigned int rows, unsigned int k) {
    unsigned int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    unsigned long long row = (unsigned long long)r * k;
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < k; j += 32) s += dy[row + j] * y[row + j];
    s = warp_sum(s);
    for (unsigned int j = threadIdx.x; j < k; j += 32) dx[row + j] = y[row + j] * (dy[row + j] - s);
}

extern "C" __global__ void softmax_cross_entropy_forward_f32(const float* logits,
                                                             const int* labels, float* probs,
                                                             float* row_loss, unsigned int rows,
                                                             unsigned int k) {
    unsigned int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    const float* z = logits + (unsigned long long)r * k;
    float lse = row_logsumexp(z, k);
    for (unsigned int j = threadIdx.x; j < k; j += 32)
        probs[(unsigned long long)r * k + j] = expf(z[j] - lse);
    if (threadIdx.x == 0) {
        int t = labels[r];
        row_loss[r] = (t >= 0 && (unsigned int)t < k) ? lse - z[t] : __int_as_float(0x7fc00000);  // NaN
    }
}

extern "C" __global__ void mean_f32(const float* x, float* out, unsigned int n) {
    __shared__ float partial[256];
    float s = 0.0f;
    for (unsigned int i = threadIdx.x; i < n; i += 256) s += x[i];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (unsigned int width = 128; width > 0; width >>= 1) {
        if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = partial[0] / (float)n;
}

extern "C" __global__ void softmax_cross_entropy_backward_f32(const float* probs,
                                                              const int* labels,
                                                              const float* dloss, float* dlogits,
                                                              unsigned int rows, unsigned int k) {
    const float g = dloss[0] / (float)rows;
    unsigned long long total = (unsigned long long)rows * k;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long r = i / k, j = i % k;
        float onehot = (unsigned long long)labels[r] == j ? 1.0f : 0.0f;
        dlogits[i] = (probs[i] - onehot) * g;
    }
}
