// The SGD update, exactly as Keras 3's `keras.optimizers.SGD` writes it
// (keras/src/optimizers/sgd.py), in the CPU reference's order of operations
// (engine/src/optim/sgd.rs), for learning rate lr, momentum mu and decoupled
// weight decay wd (applied first, when `decay` is 1):
//   w  = w - w * wd * lr                  (decay)
//   sgd_update_f32 (mu = 0):    w = w - g * lr
//   sgd_momentum_update_f32:    v = v * mu - g * lr
//                               w = w + v                   (momentum)
//                               w = w + (v * mu - g * lr)   (Nesterov, with the new v)
// Every product and sum is written with __fmul_rn / __fadd_rn / __fsub_rn,
// which the compiler never fuses into an FMA: each rounds once to f32 as on
// the CPU, so the GPU's weights equal the CPU's bit for bit.
// w and v are updated in place; one thread per parameter element.
//
// Launch geometry: 1-D grid-stride loop over the n elements of one parameter
// tensor (e.g. block 256, grid min(ceil(n / 256), 65535)).

float sgd_decayed(float w, float lr, float wd, unsigned int decay) {
    return decay ? __fsub_rn(w, __fmul_rn(__fmul_rn(w, wd), lr)) : w;
}

extern "C" __global__ void sgd_update_f32(float* w, const float* g, unsigned long long n,
                                          float lr, float wd, unsigned int decay) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float x = sgd_decayed(w[i], lr, wd, decay);
        w[i] = __fsub_rn(x, __fmul_rn(g[i], lr));
    }
}

extern "C" __global__ void sgd_momentum_update_f32(float* w, const float* g, float* v,
                                                   unsigned long long n, float lr, float mu,
                                                   float wd, unsigned int decay,
                                                   unsigned int nesterov) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float x = sgd_decayed(w[i], lr, wd, decay);
        float step = __fmul_rn(g[i], lr);
        float m = __fsub_rn(__fmul_rn(v[i], mu), step);
        v[i] = m;
        w[i] = nesterov ? __fadd_rn(x, __fsub_rn(__fmul_rn(m, mu), step)) : __fadd_rn(x, m);
    }
}
