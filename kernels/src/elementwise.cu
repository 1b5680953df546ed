// Elementwise kernels: add, mul, bias add, ReLU and bias + ReLU, the column
// sum that gives a bias its gradient, and the general NumPy broadcast of add
// and mul with its gradient.
//
// Math (x, y, dy, dx flat arrays of n elements; a bias has c elements and is
// broadcast over the last, channel, axis of an NHWC or [rows, c] tensor, so
// element i belongs to channel i % c):
//   fill_f32:           y[i] = value                   (constants on the GPU: a loss's seed gradient)
//   add_f32:            y = a + b                      (same shapes)
//   mul_f32:            y = a * b                      (same shapes; also mul's gradient dy * other)
//   accumulate_f32:     acc += x                       (gradient accumulation)
//   add_bias_f32:       y[i] = x[i] + bias[i % c]
//   mul_repeat_f32:     y[i] = x[i] * s[i % c]         (a per-channel scale, or any operand whose
//                       shape is the trailing dims of the output)
//   add_bias_inplace_f32: y[i] += bias[i % c]          (a conv's bias, on cuDNN's fresh output)
//   relu_forward_f32:   y = x > 0 ? x : 0
//   relu_backward_f32:  dx = x > 0 ? dy : 0            (derivative at 0 is 0, as on the CPU)
//   relu6_forward_f32:  y = x > 0 ? (x < 6 ? x : 6) : 0
//   relu6_backward_f32: dx = 0 < x < 6 ? dy : 0       (0 at both kinks: TensorFlow's Relu6Grad)
//   bias_relu_forward_f32:  y = max(x + bias, 0)       (Conv2D/Dense + ReLU in one pass;
//                       its backward is relu_backward on y, since y > 0 iff x + bias > 0)
//   column_sum_partial_f32 / column_sum_final_f32:
//                       db[j] = sum over rows r of dy[r, j]   (gradient of a bias)
//   add_broadcast_f32 / mul_broadcast_f32:
//                       y[i] = a[offset_a(i)] (+ or *) b[offset_b(i)]: any NumPy broadcast.
//                       The output index i is split into its coordinates over the output dims;
//                       each operand's offset is the sum of coordinate * its stride over that
//                       dim (stride 0 where it is broadcast), as `Plan::walk` on the CPU.
//   broadcast_reduce_f32 / broadcast_reduce_product_f32:
//                       dx[j] = sum over the output positions i that read operand element j of
//                       dy[i]  (add)  or  dy[i] * other[offset_other(i)]  (mul),
//                       accumulated in double in row-major output order, each product rounded
//                       to f32 first: the CPU's `broadcast::reduce_to`, so the result is the
//                       CPU's bit for bit.
//
// Rounding: f32 products and sums are written with __fmul_rn / __fadd_rn, which
// the compiler never fuses into an FMA, so every result rounds as the CPU's does.
//
// Launch geometry:
//   elementwise kernels: 1-D grid-stride loop; any grid, e.g. block 256,
//     grid min(ceil(n / 256), 65535). Each thread handles i = tid, tid + stride, ...
//     broadcast_reduce_*: the same loop over the len elements j of the operand;
//     each thread then walks the output positions of its element in order.
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

extern "C" __global__ void mul_f32(const float* a, const float* b, float* y,
                                   unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = __fmul_rn(a[i], b[i]);
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

extern "C" __global__ void mul_repeat_f32(const float* x, const float* s, float* y,
                                          unsigned long long n, unsigned int c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = __fmul_rn(x[i], s[i % c]);
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

extern "C" __global__ void relu6_forward_f32(const float* x, float* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float v = x[i];
        // Comparisons (not fminf/fmaxf), so NaN maps to 0 as on the CPU.
        y[i] = v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    }
}

extern "C" __global__ void relu6_backward_f32(const float* x, const float* dy, float* dx,
                                              unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float v = x[i];
        dx[i] = (v > 0.0f && v < 6.0f) ? dy[i] : 0.0f;
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

// How two operands map onto a broadcast output (the host's `Plan`, passed by
// value; `engine/src/ops/add/broadcast.rs`, `BroadcastIndex`, has the same
// layout): the output's dims and, per operand, its stride over each output
// dim (0 where broadcast). Dims beyond `rank` are unused.
#define BROADCAST_MAX_RANK 8
struct BroadcastIndex {
    unsigned int rank;
    unsigned long long out[BROADCAST_MAX_RANK];
    unsigned long long strides[2][BROADCAST_MAX_RANK];
};

// The offsets in a and b of output element i.
void broadcast_offsets(const BroadcastIndex& p, unsigned long long i, unsigned long long* oa,
                       unsigned long long* ob) {
    unsigned long long a = 0, b = 0;
    for (int d = (int)p.rank - 1; d >= 0; --d) {
        unsigned long long k = i % p.out[d];
        i /= p.out[d];
        a += k * p.strides[0][d];
        b += k * p.strides[1][d];
    }
    *oa = a;
    *ob = b;
}

extern "C" __global__ void add_broadcast_f32(const float* a, const float* b, float* y,
                                             unsigned long long n, BroadcastIndex p) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long oa, ob;
        broadcast_offsets(p, i, &oa, &ob);
        y[i] = __fadd_rn(a[oa], b[ob]);
    }
}

extern "C" __global__ void mul_broadcast_f32(const float* a, const float* b, float* y,
                                             unsigned long long n, BroadcastIndex p) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long oa, ob;
        broadcast_offsets(p, i, &oa, &ob);
        y[i] = __fmul_rn(a[oa], b[ob]);
    }
}

// The gradient of operand `side` (0 = a, 1 = b), `len` elements: thread j finds
// the coordinates of its element over the dims where the operand is not
// broadcast (stride != 0), then visits, in row-major order, every combination
// of the broadcast dims (stride 0): the output positions that read element j.
// `other` is the other operand (mul) or null (add).
void broadcast_reduce(const float* dy, const float* other, float* dx, unsigned long long len,
                      const BroadcastIndex& p, unsigned int side) {
    const unsigned long long* mine = p.strides[side];
    const unsigned long long* theirs = p.strides[1 - side];
    // Row-major strides of the output, and how many output positions read each element.
    unsigned long long out_stride[BROADCAST_MAX_RANK];
    unsigned long long step = 1, repeats = 1;
    for (int d = (int)p.rank - 1; d >= 0; --d) {
        out_stride[d] = step;
        step *= p.out[d];
        if (mine[d] == 0) repeats *= p.out[d];
    }
    for (unsigned long long j = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; j < len;
         j += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long base_y = 0, base_o = 0;
        for (unsigned int d = 0; d < p.rank; ++d) {
            if (mine[d] != 0) {
                unsigned long long k = (j / mine[d]) % p.out[d];
                base_y += k * out_stride[d];
                base_o += k * theirs[d];
            }
        }
        double acc = 0.0;
        for (unsigned long long r = 0; r < repeats; ++r) {
            unsigned long long rest = r, iy = base_y, io = base_o;
            for (int d = (int)p.rank - 1; d >= 0; --d) {
                if (mine[d] == 0) {
                    unsigned long long k = rest % p.out[d];
                    rest /= p.out[d];
                    iy += k * out_stride[d];
                    io += k * theirs[d];
                }
            }
            acc += other ? (double)__fmul_rn(dy[iy], other[io]) : (double)dy[iy];
        }
        dx[j] = (float)acc;
    }
}

extern "C" __global__ void broadcast_reduce_f32(const float* dy, float* dx, unsigned long long len,
                                                BroadcastIndex p, unsigned int side) {
    broadcast_reduce(dy, nullptr, dx, len, p, side);
}

extern "C" __global__ void broadcast_reduce_product_f32(const float* dy, const float* other,
                                                        float* dx, unsigned long long len,
                                                        BroadcastIndex p, unsigned int side) {
    broadcast_reduce(dy, other, dx, len, p, side);
}
