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
