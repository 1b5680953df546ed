// The Adam update, exactly as Keras 3's `keras.optimizers.Adam` writes it
// (keras/src/optimizers/adam.py, without amsgrad), in the CPU reference's
// order of operations (engine/src/optim/adam.rs).
//
// Math, for step t = iterations + 1 (t = 1 on the first update), gradient g,
// first and second moments m and v (zero before the first step):
//   lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (computed on the host, in f64)
//   w    = w - w * wd * lr                               (decoupled weight decay, when decay is 1)
//   m   += (g - m) * (1 - beta_1)
//   v   += (g * g - v) * (1 - beta_2)
//   w   -= (m * lr_t) / (sqrt(v) + epsilon)
// Keras writes the moment updates as `assign_add((g - m) * (1 - beta_1))`,
// not `beta_1 * m + (1 - beta_1) * g`: equal in exact arithmetic, but the
// rounding differs, so this kernel keeps Keras's order of operations. The
// host passes 1 - beta already rounded to f32 (from f64, as the CPU does),
// and every operation is written with a round-to-nearest intrinsic
// (__fadd_rn, __fmul_rn, __fdiv_rn, __fsqrt_rn), which the compiler never
// fuses into an FMA: each rounds once as on the CPU, so the GPU's weights
// equal the CPU's bit for bit.
// w, m and v are updated in place; one thread per parameter element.
//
// Launch geometry: 1-D grid-stride loop over the n elements of one parameter
// tensor (e.g. block 256, grid min(ceil(n / 256), 65535)).

extern "C" __global__ void adam_update_f32(float* w, const float* g, float* m, float* v,
                                           unsigned long long n, float lr_t,
                                           float one_minus_beta_1, float one_minus_beta_2,
                                           float epsilon, float lr, float wd,
                                           unsigned int decay) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float gi = g[i];
        float x = decay ? __fsub_rn(w[i], __fmul_rn(__fmul_rn(w[i], wd), lr)) : w[i];
        float mi = __fadd_rn(m[i], __fmul_rn(__fsub_rn(gi, m[i]), one_minus_beta_1));
        float vi = __fadd_rn(v[i], __fmul_rn(__fsub_rn(__fmul_rn(gi, gi), v[i]), one_minus_beta_2));
        m[i] = mi;
        v[i] = vi;
        w[i] = __fsub_rn(x, __fdiv_rn(__fmul_rn(mi, lr_t), __fadd_rn(__fsqrt_rn(vi), epsilon)));
    }
}
