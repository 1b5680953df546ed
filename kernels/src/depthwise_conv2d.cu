// Depthwise 2-D convolution (Keras DepthwiseConv2D) and its gradients, on
// NHWC tensors with Keras's kernel layout [kh, kw, c, m] (m = depth multiplier).
//
// Math (output channel co = ci * m + j; taps outside the input are skipped):
//   depthwise_conv2d_forward_f32:
//     y[b, oy, ox, co] = sum over (ky, kx) of x[b, oy*sh + ky - pt, ox*sw + kx - pl, ci] * K[ky, kx, co]
//     (the bias, if any, is added afterwards by add_bias_inplace_f32 in elementwise.cu)
//   depthwise_conv2d_dx_f32:
//     dx[b, iy, ix, ci] = sum over (ky, kx) with oy*sh + ky - pt = iy, ox*sw + kx - pl = ix
//                         of sum over j of dy[b, oy, ox, ci*m + j] * K[ky, kx, ci*m + j]
//   depthwise_conv2d_dkernel_partial_f32:
//     partial[g, ky, kx, co] = sum over the output pixels p of group g of
//                              x[b, iy, ix, ci] * dy[p, co]         (p = (b, oy, ox))
//     then dK[e] = sum over g of partial[g, e] by column_sum_final_f32 (elementwise.cu).
//   dbias is column_sum over dy's pixels (elementwise.cu).
//
// Sums run over taps in ascending (ky, kx), then j, from zero, with
// __fmul_rn / __fadd_rn (never fused into an FMA): y and dx are the CPU's
// bit for bit. dK's pixels are grouped differently from the CPU's, so it
// agrees up to rounding, and is the same from run to run (no atomics).
//
// Launch geometry:
//   forward: 1-D grid-stride loop over the n*oh*ow*c*m outputs; consecutive
//     threads take consecutive output channels, so loads and stores coalesce.
//   dx: 1-D grid-stride loop over the n*h*w*c input elements, channels fastest.
//   dkernel_partial: block 256, grid (ceil(kh*kw*c*m / 256), G); thread
//     (blockIdx.x * 256 + threadIdx.x) owns one kernel element e = (ky, kx, co),
//     block row blockIdx.y = g sums the contiguous pixel range
//     [g * chunk, min((g + 1) * chunk, n*oh*ow)), chunk = ceil(n*oh*ow / G), and
//     writes partial[g * kh*kw*c*m + e]. partial holds G * kh*kw*c*m floats.

struct Geometry {
    int n, h, w, c, m, kh, kw, sh, sw, oh, ow, pad_top, pad_left;
};

extern "C" __global__ void depthwise_conv2d_forward_f32(const float* x, const float* k, float* y,
                                                        Geometry g) {
    const int cm = g.c * g.m;
    unsigned long long total = (unsigned long long)g.n * g.oh * g.ow * cm;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int co = (int)(i % cm);
        unsigned long long pix = i / cm;
        int ox = (int)(pix % g.ow), oy = (int)((pix / g.ow) % g.oh);
        unsigned long long b = pix / ((unsigned long long)g.ow * g.oh);
        int ci = co / g.m;
        float acc = 0.0f;
        for (int ky = 0; ky < g.kh; ++ky) {
            int iy = oy * g.sh + ky - g.pad_top;
            if (iy < 0 || iy >= g.h) continue;
            for (int kx = 0; kx < g.kw; ++kx) {
                int ix = ox * g.sw + kx - g.pad_left;
                if (ix < 0 || ix >= g.w) continue;
                float v = x[((b * g.h + iy) * g.w + ix) * g.c + ci];
                acc = __fadd_rn(acc, __fmul_rn(v, k[(ky * g.kw + kx) * cm + co]));
            }
        }
        y[i] = acc;
    }
}

extern "C" __global__ void depthwise_conv2d_dx_f32(const float* k, const float* dy, float* dx,
                                                   Geometry g) {
    const int cm = g.c * g.m;
    unsigned long long total = (unsigned long long)g.n * g.h * g.w * g.c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ci = (int)(i % g.c);
        unsigned long long pix = i / g.c;
        int ix = (int)(pix % g.w), iy = (int)((pix / g.w) % g.h);
        unsigned long long b = pix / ((unsigned long long)g.w * g.h);
        float acc = 0.0f;
        for (int ky = 0; ky < g.kh; ++ky) {
            int t = iy + g.pad_top - ky;  // oy * sh, if this tap is used
            if (t < 0 || t % g.sh != 0 || t / g.sh >= g.oh) continue;
            int oy = t / g.sh;
            for (int kx = 0; kx < g.kw; ++kx) {
                int u = ix + g.pad_left - kx;
                if (u < 0 || u % g.sw != 0 || u / g.sw >= g.ow) continue;
                int ox = u / g.sw;
                const float* grad = dy + ((b * g.oh + oy) * g.ow + ox) * cm + ci * g.m;
                const float* tap = k + (ky * g.kw + kx) * cm + ci * g.m;
                for (int j = 0; j < g.m; ++j) acc = __fadd_rn(acc, __fmul_rn(grad[j], tap[j]));
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ void depthwise_conv2d_dkernel_partial_f32(const float* x, const float* dy,
                                                                float* partial, Geometry g) {
    const int cm = g.c * g.m;
    const int taps = g.kh * g.kw * cm;
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= taps) return;
    int co = e % cm, tap = e / cm;
    int kx = tap % g.kw, ky = tap / g.kw, ci = co / g.m;
    unsigned long long pixels = (unsigned long long)g.n * g.oh * g.ow;
    unsigned long long chunk = (pixels + gridDim.y - 1) / gridDim.y;
    unsigned long long first = blockIdx.y * chunk;
    unsigned long long last = first + chunk < pixels ? first + chunk : pixels;
    float acc = 0.0f;
    for (unsigned long long p = first; p < last; ++p) {
        int ox = (int)(p % g.ow), oy = (int)((p / g.ow) % g.oh);
        unsigned long long b = p / ((unsigned long long)g.ow * g.oh);
        int iy = oy * g.sh + ky - g.pad_top, ix = ox * g.sw + kx - g.pad_left;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
        float v = x[((b * g.h + iy) * g.w + ix) * g.c + ci];
        acc = __fadd_rn(acc, __fmul_rn(v, dy[p * cm + co]));
    }
    partial[(unsigned long long)blockIdx.y * taps + e] = acc;
}
