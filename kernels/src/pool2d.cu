// Max and average pooling over NHWC windows, forward and backward, with the
// CPU reference's rules (engine/src/ops/max_pool2d, avg_pool2d).
//
// Geometry (resolved on the host, TensorFlow padding): x [n, h, w, c],
// y [n, oh, ow, c], window kh x kw at stride sh x sw, pt rows of padding
// above and pl columns on the left. The window of output (oy, ox) covers the
// input cells iy = oy * sh - pt + ky (0 <= ky < kh), ix = ox * sw - pl + kx
// (0 <= kx < kw) that lie inside the input; padded cells are skipped (the
// host refuses windows made only of padding).
//
// Math:
//   max_pool2d_forward_f32:  y = max over the window's cells; argmax = iy * w + ix of the
//                            FIRST maximum in row-major window order (ky outer, kx inner;
//                            only a strictly larger value replaces the running best)
//   max_pool2d_backward_f32: dx[b, iy, ix, ch] = sum of dy[b, oy, ox, ch] over the windows
//                            whose argmax is (iy, ix)
//   avg_pool2d_forward_f32:  y = (sum of the window's cells) / count, count = cells inside
//   avg_pool2d_backward_f32: dx[b, iy, ix, ch] = sum over the windows holding (iy, ix) of
//                            dy[b, oy, ox, ch] / count(oy, ox)
// The windows holding input row iy are oy in [ceil((iy + pt - kh + 1) / sh), floor((iy + pt) / sh)]
// clipped to [0, oh); columns the same.
//
// Launch geometry: 1-D grid-stride loops; forward kernels over the outputs
// n * oh * ow * c, backward kernels over the inputs n * h * w * c (a gather:
// each dx element is written once, no atomics, deterministic). Consecutive
// threads take consecutive channels, so reads coalesce.

struct Pool {
    int n, h, w, c, kh, kw, sh, sw, oh, ow, pt, pl;
};

__device__ Pool make_pool(int n, int h, int w, int c, int kh, int kw, int sh, int sw, int oh,
                          int ow, int pt, int pl) {
    Pool g;
    g.n = n; g.h = h; g.w = w; g.c = c; g.kh = kh; g.kw = kw;
    g.sh = sh; g.sw = sw; g.oh = oh; g.ow = ow; g.pt = pt; g.pl = pl;
    return g;
}

// First and last output index whose window holds input index i along one axis.
__device__ void windows_holding(int i, int pad, int k, int s, int out, int* first, int* last) {
    int lo = i + pad - k + 1;
    *first = lo <= 0 ? 0 : (lo + s - 1) / s;
    *last = min((i + pad) / s, out - 1);
}

extern "C" __global__ void max_pool2d_forward_f32(const float* x, float* y, int* argmax, int n,
                                                  int h, int w, int c, int kh, int kw, int sh,
                                                  int sw, int oh, int ow, int pt, int pl) {
    unsigned long long total = (unsigned long long)n * oh * ow * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int ox = (int)(pix % ow), oy = (int)((pix / ow) % oh);
        unsigned long long b = pix / ((unsigned long long)ow * oh);
        const float* img = x + b * h * w * c + ch;
        float best = 0.0f;
        int best_at = -1;
        for (int ky = 0; ky < kh; ++ky) {
            int iy = oy * sh - pt + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; ++kx) {
                int ix = ox * sw - pl + kx;
                if (ix < 0 || ix >= w) continue;
                float v = img[((unsigned long long)iy * w + ix) * c];
                if (best_at < 0 || v > best) {
                    best = v;
                    best_at = iy * w + ix;
                }
            }
        }
        y[i] = best;
        argmax[i] = best_at;
    }
}

extern "C" __global__ void max_pool2d_backward_f32(const float* dy, const int* argmax, float* dx,
                                                   int n, int h, int w, int c, int kh, int kw,
                                                   int sh, int sw, int oh, int ow, int pt,
                                                   int pl) {
    unsigned long long total = (unsigned long long)n * h * w * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int ix = (int)(pix % w), iy = (int)((pix / w) % h);
        unsigned long long b = pix / ((unsigned long long)w * h);
        int oy0, oy1, ox0, ox1;
        windows_holding(iy, pt, kh, sh, oh, &oy0, &oy1);
        windows_holding(ix, pl, kw, sw, ow, &ox0, &ox1);
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy) {
            for (int ox = ox0; ox <= ox1; ++ox) {
                unsigned long long o = ((b * oh + oy) * ow + ox) * c + ch;
                if (argmax[o] == iy * w + ix) s += dy[o];
            }
        }
        dx[i] = s;
    }
}

extern "C" __global__ void avg_pool2d_forward_f32(const float* x, float* y, int n, int h, int w,
                                                  int c, int kh, int kw, int sh, int sw, int oh,
                                                  int ow, int pt, int pl) {
    unsigned long long total = (unsigned long long)n * oh * ow * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int ox = (int)(pix % ow), oy = (int)((pix / ow) % oh);
        unsigned long long b = pix / ((unsigned long long)ow * oh);
        const float* img = x + b * h * w * c + ch;
        float s = 0.0f;
        int count = 0;
        for (int ky = 0; ky < kh; ++ky) {
            int iy = oy * sh - pt + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; ++kx) {
                int ix = ox * sw - pl + kx;
                if (ix < 0 || ix >= w) continue;
                s += img[((unsigned long long)iy * w + ix) * c];
                ++count;
            }
        }
        y[i] = s / (float)count;
    }
}

// The number of input cells inside the window of output index o along one axis.
__device__ int cells_inside(int o, int pad, int k, int s, int in) {
    int start = o * s - pad;
    return min(start + k, in) - max(start, 0);
}

extern "C" __global__ void avg_pool2d_backward_f32(const float* dy, float* dx, int n, int h,
                                                   int w, int c, int kh, int kw, int sh, int sw,
                                                   int oh, int ow, int pt, int pl) {
    unsigned long long total = (unsigned long long)n * h * w * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int ix = (int)(pix % w), iy = (int)((pix / w) % h);
        unsigned long long b = pix / ((unsigned long long)w * h);
        int oy0, oy1, ox0, ox1;
        windows_holding(iy, pt, kh, sh, oh, &oy0, &oy1);
        windows_holding(ix, pl, kw, sw, ow, &ox0, &ox1);
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy) {
            int rows = cells_inside(oy, pt, kh, sh, h);
            for (int ox = ox0; ox <= ox1; ++ox) {
                int count = rows * cells_inside(ox, pl, kw, sw, w);
                s += dy[((b * oh + oy) * ow + ox) * c + ch] / (float)count;
            }
        }
        dx[i] = s;
    }
}
