// Elementwise kernels: add, bias add, ReLU and bias + ReLU, plus the column
// sum that gives a bias its gradient.
//
// Math (x, y, dy, dx flat arrays of n elements; a bias has c elements and is
// broadcast over the last, channel, axis of an NHWC or [rows, c] tensor, so
// element i belongs to channel i % c):
//   fill_f32:           y[i] = value                   (constants on the GPU: a loss's seed gradient)
//   add_f32:            y = a + b                      (same shapes)
//   accumulate_f32:     acc += x                       (gradient accumulation)
//   add_bias_f32:       y[i] = x[i] + bias[i % c]
//   add_bias_inplace_f32: y[i] += bias[i % c]          (a conv's bias, on cuDNN's fresh output)
//   relu_forward_f32:   y = x > 0 ? x : 0
//   relu_backward_f32:  dx = x > 0 ? dy : 0            (derivative at 0 is 0, as on the CPU)
//   bias_relu_forward_f32:  y = max(x + bias, 0)       (Conv2D/Dense + ReLU in one pass;
//                       its backward is relu_backward on y, since y > 0 iff x + bias > 0)
//   column_sum_partial_f32 / column_sum_final_f32:
//                       db[j] = sum over rows r of dy[r, j]   (gradient of a bias)
//
// Launch geometry:
//   elementwise kernels: 1-D grid-stride loop; any grid, e.g. block 256,
//     grid min(ceil(n / 256), 65535). Each thread handles i = tid, tid + stride, ...
//   column_sum_partial_f32: block (32, 8), grid (ceil(c / 32), G). Thread
//     (tx, ty) of block (bx, by) sums channel j = 32 bx + tx over rows
//     r = 8 by + ty, step 8 G, the 8 row-threads are reduced in shared memory,
//     and block (bx, by) writes partial[by * c + j]. Consecutive threads read
//     consecutive channels, so loads coalesce. partial holds G * c floats.
//   column_sum_final_f32: 1-D, one thread per channel, sums the G partials in
//     order. Two fixed-order passes and no atomics: the result is bit-for-bit
//     repeatable from run to run.

extern "C" __global__ void fill_f32(float* y, float value, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = value;
    }
}

extern "C" __global__ void add_f32(const float* a, const float* b, float* y,
                                   unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = a[i] + b[i];
    }
}

extern "C" __global__ void accumulate_f32(float* acc, const float* x, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        acc[i] += x[i];
    }
}

extern "C" __global__ void add_bias_f32(const float* x, const float* bias, float* y,
                                        unsigned long long n, unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = x[i] + bias[i % c];
    }
}

extern "C" __global__ void add_bias_inplace_f32(float* y, const float* bias, unsigned long long n,
                                                unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] += bias[i % c];
    }
}

extern "C" __global__ void relu_forward_f32(const float* x, float* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float v = x[i];
        // Written as a comparison (not fmaxf) so NaN maps to 0 exactly as the CPU reference does.
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

extern "C" __global__ void relu_backward_f32(const float* x, const float* dy, float* dx,
                                             unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
    }
}

extern "C" __global__ void bias_relu_forward_f32(const float* x, const float* bias, float* y,
                                                 unsigned long long n, unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float v = x[i] + bias[i % c];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

extern "C" __global__ void column_sum_partial_f32(const float* x, float* partial,
                                                  unsigned long long rows, unsigned int c) {
    __shared__ float sums[8][32];
    unsigned int j = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (j < c) {
        for (unsigned long long r = blockIdx.y * 8ull + threadIdx.y; r < rows;
             r += 8ull * gridDim.y) {
            s += x[r * c + j];
        }
    }
    sums[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        float t = 0.0f;
        for (int k = 0; k < 8; ++k) t += sums[k][threadIdx.x];
        partial[(unsigned long long)blockIdx.y * c + j] = t;
    }
}

extern "C" __global__ void column_sum_final_f32(const float* partial, float* out,
                                                unsigned int groups, unsigned int c) {
    unsigned int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c) return;
    float t = 0.0f;
    for (unsigned int g = 0; g < groups; ++g) t += partial[(unsigned long long)g * c + j];
    out[j] = t;
}
