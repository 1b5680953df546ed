// Just enough of CUDA for the host C++ compiler to run thaw's kernels that
// need no cooperation between threads (no __shared__, no __syncthreads, no
// shuffles): a single thread per "block", and the caller walks blockIdx.x.
// Grid-stride kernels cover everything from blockIdx.x = 0 with gridDim = 1.
// Used by tests/tests/cuda_kernels.rs; it checks the kernels' math, not CUDA.
#include <algorithm>
#include <cmath>
#include <cstring>
using std::max;
using std::min;
#define __global__
#define __device__
// Only so that files holding cooperative kernels (column sums) compile here;
// those kernels are not run on the host.
#define __shared__
static inline void __syncthreads() {}
struct Dim3 {
    unsigned x, y, z;
};
static Dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1},
            gridDim = {1, 1, 1};
static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
// Round-to-nearest arithmetic: on the host every float operation already
// rounds once (x86-64 without -march has no FMA to contract into).
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
