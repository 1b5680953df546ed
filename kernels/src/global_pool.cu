// Global average and max pooling over the spatial axes of NHWC tensors:
// x [n, h, w, c] -> y [n, c]. Below p = y * w + x runs over the hw = h * w
// positions of one image, so x[b, p, j] = x[(b * hw + p) * c + j].
//
// Math:
//   global_avg_pool_forward_f32:   y[b, j]     = (1 / hw) * sum_p x[b, p, j]
//   global_avg_pool_backward_f32:  dx[b, p, j] = dy[b, j] / hw
//   global_max_pool_forward_f32:   y[b, j]     = max_p x[b, p, j],
//                                  argmax[b, j] = the first p (row-major order:
//                                  row by row, left to right) holding that maximum
//   global_max_pool_backward_f32:  dx[b, p, j] = p == argmax[b, j] ? dy[b, j] : 0
// Tie rule: when several positions hold the maximum, only the first in
// row-major order gets the gradient (the scan below replaces the running best
// only on a strictly larger value), the same rule as the CPU reference.
// The average is a sum divided by hw, as the CPU computes it.
//
// Launch geometry:
//   forward kernels: one thread per output (b, j), 1-D grid-stride loop over
//     n * c (any grid: launch_1d caps it at 65,535 blocks, fewer than n * c / 256
//     for big batches); consecutive threads take consecutive channels, so each
//     step of the loop over p reads one contiguous run of c floats.
//   backward kernels: one thread per input element, 1-D grid-stride loop over
//     n * hw * c. Each dx element is written once: no atomics.

extern "C" __global__ void global_avg_pool_forward_f32(const float* x, float* y, unsigned int n,
                                                       unsigned int hw, unsigned int c) {
    unsigned long long total = (unsigned long long)n * c;
    for (unsigned long long o = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         o < total; o += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long b = o / c, j = o % c;
        const float* base = x + b * hw * c + j;
        float s = 0.0f;
        for (unsigned int p = 0; p < hw; ++p) s += base[(unsigned long long)p * c];
        y[o] = s / (float)hw;
    }
}

extern "C" __global__ void global_avg_pool_backward_f32(const float* dy, float* dx, unsigned int n,
                                                        unsigned int hw, unsigned int c) {
    unsigned long long total = (unsigned long long)n * hw * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long j = i % c, b = i / ((unsigned long long)hw * c);
        dx[i] = dy[b * c + j] / (float)hw;
    }
}

extern "C" __global__ void global_max_pool_forward_f32(const float* x, float* y, int* argmax,
                                                       unsigned int n, unsigned int hw,
                                                       unsigned int c) {
    unsigned long long total = (unsigned long long)n * c;
    for (unsigned long long o = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         o < total; o += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long b = o / c, j = o % c;
        const float* base = x + b * hw * c + j;
        float best = base[0];
        int best_p = 0;
        for (unsigned int p = 1; p < hw; ++p) {
            float v = base[(unsigned long long)p * c];
            if (v > best) {  // strictly larger: ties keep the first position
                best = v;
                best_p = (int)p;
            }
        }
        y[o] = best;
        argmax[o] = best_p;
    }
}

extern "C" __global__ void global_max_pool_backward_f32(const float* dy, const int* argmax,
                                                        float* dx, unsigned int n,
                                                        unsigned int hw, unsigned int c) {
    unsigned long long total = (unsigned long long)n * hw * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long j = i % c, bp = i / c;
        unsigned long long b = bp / hw, p = bp % hw;
        unsigned long long o = b * c + j;
        dx[i] = (unsigned long long)argmax[o] == p ? dy[o] : 0.0f;
    }
}
