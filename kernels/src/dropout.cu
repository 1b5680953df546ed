// Inverted dropout with masks drawn from thaw's counter-based generator.
//
// Math (n elements, flat index i; rate in [0, 1), scale = 1 / (1 - rate)):
//   keep(i) = uniform_f32(seed, stream, i) >= rate
//   dropout_forward_f32:   y[i]  = keep(i) ? x[i]  * scale : 0
//   dropout_backward_f32:  dx[i] = keep(i) ? dy[i] * scale : 0
// The backward pass redraws the same mask from (seed, stream, i) instead of
// storing it: the generator is a pure function of its counter.
//
// The generator is engine/src/rng.rs reimplemented bit for bit:
//   mix64(z)                 = SplitMix64's finaliser
//   random_u64(seed, s, i)   = mix64(key + i * 0x9e3779b97f4a7c15),
//                              key = mix64(seed ^ mix64(s + 0x9e3779b97f4a7c15))
//   uniform_f32(seed, s, i)  = (random_u64(seed, s, i) >> 40) * 2^-24
// All arithmetic is on unsigned 64-bit integers, which wrap modulo 2^64 in C
// exactly as Rust's wrapping_add / wrapping_mul do; the top 24 bits convert to
// float exactly and 2^-24 is a power of two, so the uniform is exact too.
// The host passes `rate` and `scale` as the f32 values the CPU reference
// compares and multiplies with (`rate as f32`), so masks and outputs agree bit
// for bit with the CPU.
//
// The three generator functions between the THAW_RNG markers are plain C, with
// no CUDA qualifier and no macro: NVRTC compiles them as device functions
// because thaw passes --device-as-default-execution-space, and the test
// tests/tests/cuda_kernels.rs compiles the very same text with the host C
// compiler and checks it against engine::rng.
//
// Launch geometry: 1-D grid-stride loop over i, any grid (e.g. block 256,
// grid min(ceil(n / 256), 65535)).

// THAW_RNG BEGIN
unsigned long long thaw_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

unsigned long long thaw_random_u64(unsigned long long seed, unsigned long long stream,
                                   unsigned long long index) {
    unsigned long long key = thaw_mix64(seed ^ thaw_mix64(stream + 0x9e3779b97f4a7c15ull));
    return thaw_mix64(key + index * 0x9e3779b97f4a7c15ull);
}

float thaw_uniform_f32(unsigned long long seed, unsigned long long stream,
                       unsigned long long index) {
    return (float)(thaw_random_u64(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}
// THAW_RNG END

extern "C" __global__ void dropout_forward_f32(const float* x, float* y, unsigned long long n,
                                               unsigned long long seed,
                                               unsigned long long stream, float rate,
                                               float scale) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = thaw_uniform_f32(seed, stream, i) >= rate ? x[i] * scale : 0.0f;
    }
}

extern "C" __global__ void dropout_backward_f32(const float* dy, float* dx, unsigned long long n,
                                                unsigned long long seed,
                                                unsigned long long stream, float rate,
                                                float scale) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        dx[i] = thaw_uniform_f32(seed, stream, i) >= rate ? dy[i] * scale : 0.0f;
    }
}
