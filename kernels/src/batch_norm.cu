// Batch normalisation over the last (channel) axis of x viewed as [rows, c]
// (rows = n * h * w for NHWC images), in inference and training modes.
//
// Math (per channel j; eps from the layer; biased variance, as Keras):
//   inference, folded once per layer into a scale and a shift:
//     inv_std[j] = 1 / sqrt(var[j] + eps)
//     scale[j]   = gamma[j] * inv_std[j]
//     shift[j]   = beta[j] - mean[j] * scale[j]
//     y[r, j]    = x[r, j] * scale[j] + shift[j]          (Keras 3's ops.batch_normalization order)
//     dx[r, j]   = dy[r, j] * scale[j]                    (channel_scale_f32)
//   training forward: mean and var are the batch's own statistics,
//     mean[j] = (1/N) sum_r x[r, j],  var[j] = (1/N) sum_r (x[r, j] - mean[j])^2,  N = rows,
//     computed with Welford's update per thread and Chan's merge of the partial
//     results (no catastrophic cancellation of sum(x^2) - N mean^2); then the
//     same fold and scale-shift as inference.
//   training backward, with xhat = (x - mean) * inv_std:
//     dbeta[j]  = sum_r dy[r, j]
//     dgamma[j] = sum_r dy[r, j] * xhat[r, j]
//     dx[r, j]  = gamma[j] * inv_std[j] / N * (N dy[r, j] - dbeta[j] - xhat[r, j] dgamma[j])
//
// Launch geometry:
//   elementwise kernels (batch_norm_fold_f32 over c, scale_shift_f32,
//     scale_shift_relu_f32, channel_scale_f32, batch_norm_backward_dx_f32
//     over rows * c): 1-D grid-stride loops, any grid (e.g. block 256).
//   column reductions (batch_norm_welford_partial_f32,
//     batch_norm_backward_partial_f32): block (32, 8), grid (ceil(c / 32), G);
//     thread (tx, ty) of block (bx, by) handles channel j = 32 bx + tx and
//     rows r = 8 by + ty, step 8 G (coalesced: a warp reads 32 consecutive
//     channels of one row); the 8 row-threads are merged in shared memory and
//     each block row by writes its partial result at [by * c + j].
//     The partial buffers hold G * c floats each.
//   the matching *_final_f32 kernels: one thread per channel (1-D grid over c)
//     merging the G partials in order. No atomics anywhere: deterministic.

extern "C" __global__ void batch_norm_fold_f32(const float* gamma, const float* beta,
                                               const float* mean, const float* var, float eps,
                                               float* scale, float* shift, float* inv_std,
                                               unsigned int c) {
    for (unsigned int j = blockIdx.x * blockDim.x + threadIdx.x; j < c;
         j += gridDim.x * blockDim.x) {
        float inv = 1.0f / sqrtf(var[j] + eps);
        float s = gamma[j] * inv;
        scale[j] = s;
        shift[j] = beta[j] - mean[j] * s;
        if (inv_std) inv_std[j] = inv;  // kept for the training backward pass; may be null
    }
}

extern "C" __global__ void scale_shift_f32(const float* x, const float* scale, const float* shift,
                                           float* y, unsigned long long n, unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int j = (unsigned int)(i % c);
        y[i] = x[i] * scale[j] + shift[j];
    }
}

// Batch norm followed by ReLU (ResNet50's bn -> relu pairs) in one pass.
extern "C" __global__ void scale_shift_relu_f32(const float* x, const float* scale,
                                                const float* shift, float* y,
                                                unsigned long long n, unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int j = (unsigned int)(i % c);
        float v = x[i] * scale[j] + shift[j];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

extern "C" __global__ void channel_scale_f32(const float* dy, const float* scale, float* dx,
                                             unsigned long long n, unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        dx[i] = dy[i] * scale[i % c];
    }
}

// Chan et al.'s merge of two (count, mean, M2) summaries into the first.
__device__ void welford_merge(float* count, float* mean, float* m2, float count_b, float mean_b,
                              float m2_b) {
    float total = *count + count_b;
    if (total == 0.0f) return;
    float delta = mean_b - *mean;
    float w = count_b / total;
    *mean += delta * w;
    *m2 += m2_b + delta * delta * *count * w;
    *count = total;
}

extern "C" __global__ void batch_norm_welford_partial_f32(const float* x, float* part_count,
                                                          float* part_mean, float* part_m2,
                                                          unsigned long long rows,
                                                          unsigned int c) {
    __shared__ float counts[8][32], means[8][32], m2s[8][32];
    unsigned int j = blockIdx.x * 32 + threadIdx.x;
    float count = 0.0f, mean = 0.0f, m2 = 0.0f;
    if (j < c) {
        for (unsigned long long r = blockIdx.y * 8ull + threadIdx.y; r < rows;
             r += 8ull * gridDim.y) {
            float v = x[r * c + j];
            count += 1.0f;
            float delta = v - mean;
            mean += delta / count;
            m2 += delta * (v - mean);
        }
    }
    counts[threadIdx.y][threadIdx.x] = count;
    means[threadIdx.y][threadIdx.x] = mean;
    m2s[threadIdx.y][threadIdx.x] = m2;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        for (int k = 1; k < 8; ++k)
            welford_merge(&count, &mean, &m2, counts[k][threadIdx.x], means[k][threadIdx.x],
                          m2s[k][threadIdx.x]);
        unsigned long long o = (unsigned long long)blockIdx.y * c + j;
        part_count[o] = count;
        part_mean[o] = mean;
        part_m2[o] = m2;
    }
}

extern "C" __global__ void batch_norm_welford_final_f32(const float* part_count,
                                                        const float* part_mean,
                                                        const float* part_m2, float* mean,
                                                        float* var, unsigned int groups,
                                                        unsigned int c) {
    unsigned int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c) return;
    float count = 0.0f, mu = 0.0f, m2 = 0.0f;
    for (unsigned int g = 0; g < groups; ++g) {
        unsigned long long o = (unsigned long long)g * c + j;
        welford_merge(&count, &mu, &m2, part_count[o], part_mean[o], part_m2[o]);
    }
    mean[j] = mu;
    var[j] = count > 0.0f ? m2 / count : 0.0f;  // biased, as Keras
}

extern "C" __global__ void batch_norm_backward_partial_f32(const float* x, const float* dy,
                                                           const float* mean,
                                                           const float* inv_std,
                                                           float* part_dbeta, float* part_dgamma,
                                                           unsigned long long rows,
                                                           unsigned int c) {
    __shared__ float dbetas[8][32], dgammas[8][32];
    unsigned int j = blockIdx.x * 32 + threadIdx.x;
    float db = 0.0f, dg = 0.0f;
    if (j < c) {
        float mu = mean[j], inv = inv_std[j];
        for (unsigned long long r = blockIdx.y * 8ull + threadIdx.y; r < rows;
             r += 8ull * gridDim.y) {
            float g = dy[r * c + j];
            db += g;
            dg += g * (x[r * c + j] - mu) * inv;
        }
    }
    dbetas[threadIdx.y][threadIdx.x] = db;
    dgammas[threadIdx.y][threadIdx.x] = dg;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        for (int k = 1; k < 8; ++k) {
            db += dbetas[k][threadIdx.x];
            dg += dgammas[k][threadIdx.x];
        }
        unsigned long long o = (unsigned long long)blockIdx.y * c + j;
        part_dbeta[o] = db;
        part_dgamma[o] = dg;
    }
}

extern "C" __global__ void batch_norm_backward_final_f32(const float* part_dbeta,
                                                         const float* part_dgamma, float* dbeta,
                                                         float* dgamma, unsigned int groups,
                                                         unsigned int c) {
    unsigned int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c) return;
    float db = 0.0f, dg = 0.0f;
    for (unsigned int g = 0; g < groups; ++g) {
        db += part_dbeta[(unsigned long long)g * c + j];
        dg += part_dgamma[(unsigned long long)g * c + j];
    }
    dbeta[j] = db;
    dgamma[j] = dg;
}

extern "C" __global__ void batch_norm_backward_dx_f32(const float* x, const float* dy,
                                                      const float* mean, const float* inv_std,
                                                      const float* gamma, const float* dbeta,
                                                      const float* dgamma, float* dx,
                                                      unsigned long long rows, unsigned int c) {
    const float count = (float)rows;
    unsigned long long total = rows * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int j = (unsigned int)(i % c);
        float xhat = (x[i] - mean[j]) * inv_std[j];
        dx[i] = gamma[j] * inv_std[j] / count * (count * dy[i] - dbeta[j] - xhat * dgamma[j]);
    }
}
