// The Adam update, exactly as Keras 3's `keras.optimizers.Adam` writes it
// (keras/src/optimizers/adam.py, without amsgrad or weight decay).
//
// Math, for step t = iterations + 1 (t = 1 on the first update), gradient g,
// first and second moments m and v (zero before the first step):
//   lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (computed on the host, in f64)
//   m   += (g - m) * (1 - beta_1)
//   v   += (g * g - v) * (1 - beta_2)
//   w   -= (m * lr_t) / (sqrt(v) + epsilon)
// Keras writes the moment updates as `assign_add((g - m) * (1 - beta_1))`,
// not `beta_1 * m + (1 - beta_1) * g`: equal in exact arithmetic, but the
// rounding differs, so this kernel keeps Keras's order of operations.
// w, m and v are updated in place; one thread per parameter element.
//
// Launch geometry: 1-D grid-stride loop over the n elements of one parameter
// tensor (e.g. block 256, grid min(ceil(n / 256), 65535)).

extern "C" __global__ void adam_update_f32(float* w, const float* g, float* m, float* v,
                                           unsigned long long n, float lr_t, float beta_1,
                                           float beta_2, float epsilon) {
    const float one_minus_beta_1 = 1.0f - beta_1;
    const float one_minus_beta_2 = 1.0f - beta_2;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float gi = g[i];
        float mi = m[i] + (gi - m[i]) * one_minus_beta_1;
        float vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= (mi * lr_t) / (sqrtf(vi) + epsilon);
    }
}
