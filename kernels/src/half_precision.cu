// Conversions between f32 and the 16-bit formats f16 (IEEE binary16) and
// bf16 (bfloat16), for feature extraction in half precision with f32
// accumulation elsewhere.
//
// NVRTC has no built-in cuda_fp16.h / cuda_bf16.h, so these kernels carry
// 16-bit values as `unsigned short` bit patterns and convert without headers:
//   f16:  the PTX instructions cvt.rn.f16.f32 (round to nearest even) and
//         cvt.f32.f16 (exact), through inline assembly.
//   bf16: bf16 is the top half of an f32, so bf16 -> f32 is a 16-bit shift
//         (exact), and f32 -> bf16 rounds to nearest even on the bits:
//           bits + 0x7fff + ((bits >> 16) & 1), then >> 16;
//         NaN stays NaN (quiet bit set), as the `half` crate's bf16::from_f32.
// Both roundings are the ones the `half` crate uses on the CPU, so a tensor
// converted on either device holds the same bits.
//
// Launch geometry: 1-D grid-stride loop over n elements, any grid (e.g. block
// 256, grid min(ceil(n / 256), 65535)).

extern "C" __global__ void f32_to_f16(const float* x, unsigned short* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x[i]));
        y[i] = h;
    }
}

extern "C" __global__ void f16_to_f32(const unsigned short* x, float* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x[i]));
        y[i] = f;
    }
}

extern "C" __global__ void f32_to_bf16(const float* x, unsigned short* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int bits = __float_as_uint(x[i]);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            y[i] = (unsigned short)((bits >> 16) | 0x0040u);  // NaN: keep it a (quiet) NaN
        } else {
            y[i] = (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
        }
    }
}

extern "C" __global__ void bf16_to_f32(const unsigned short* x, float* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = __uint_as_float(((unsigned int)x[i]) << 16);
    }
}
