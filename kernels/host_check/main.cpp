// Host check of the kernels' math (built and run by tests/tests/cuda_kernels.rs
// with the host C++ compiler; no GPU involved). Each kernel's output is
// compared with a plain loop written from the formula in the .cu header;
// the program prints one line per check and exits 1 if any is off.
#include "shim.h"
#include "bilinear_resize.cu"
#include "adam.cu"
#include "sgd.cu"
#include "elementwise.cu"
#include "global_pool.cu"
#include <cstdio>
#include <cstdlib>
#include <vector>

static int failures = 0;
static void check(const char* what, double err, double tol) {
    printf("%-58s max|diff| %.2e (tol %.0e)%s\n", what, err, tol, err <= tol ? "" : "  FAILED");
    if (!(err <= tol)) failures++;
}
static float uniform(unsigned* s) {  // small LCG: inputs only, no expected values
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}
// The CPU reference's taps (engine/src/ops/bilinear_resize/cpu.rs).
static void axis(int o, float s, int in, int& lo, int& hi, float& f) {
    float src = std::max(((float)o + 0.5f) * s - 0.5f, 0.0f);
    lo = std::min((int)floorf(src), in - 1);
    hi = std::min(lo + 1, in - 1);
    f = src - (float)lo;
}

int main() {
    unsigned seed = 1;
    const int sizes[][4] = {{5, 7, 11, 13}, {11, 13, 5, 7}, {32, 32, 224, 224}, {7, 5, 7, 5},
                            {3, 9, 1, 2},   {1, 1, 4, 3},   {224, 224, 32, 32}, {10, 10, 3, 17}};
    for (auto& sz : sizes) {
        int ih = sz[0], iw = sz[1], oh = sz[2], ow = sz[3], n = 2, c = 3;
        std::vector<float> x(n * ih * iw * c), dy(n * oh * ow * c), y(n * oh * ow * c),
            dx(n * ih * iw * c), dx_ref(n * ih * iw * c, 0.0f);
        for (auto& v : x) v = uniform(&seed);
        for (auto& v : dy) v = uniform(&seed);
        resize_bilinear_forward_f32(x.data(), y.data(), n, ih, iw, c, oh, ow);
        resize_bilinear_backward_f32(dy.data(), dx.data(), n, ih, iw, c, oh, ow);
        float sy = (float)ih / oh, sx = (float)iw / ow;
        double fwd = 0, bwd = 0;
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ch = 0; ch < c; ch++) {
                        int y0, y1, x0, x1;
                        float fy, fx;
                        axis(oy, sy, ih, y0, y1, fy);
                        axis(ox, sx, iw, x0, x1, fx);
                        auto X = [&](int r, int q) { return x[((b * ih + r) * iw + q) * c + ch]; };
                        auto D = [&](int r, int q) -> float& {
                            return dx_ref[((b * ih + r) * iw + q) * c + ch];
                        };
                        float ref = (1 - fy) * ((1 - fx) * X(y0, x0) + fx * X(y0, x1)) +
                                    fy * ((1 - fx) * X(y1, x0) + fx * X(y1, x1));
                        fwd = std::max(fwd, (double)fabsf(ref - y[((b * oh + oy) * ow + ox) * c + ch]));
                        // Backward reference: scatter each output's gradient to its four inputs.
                        float g = dy[((b * oh + oy) * ow + ox) * c + ch];
                        D(y0, x0) += g * (1 - fy) * (1 - fx);
                        D(y0, x1) += g * (1 - fy) * fx;
                        D(y1, x0) += g * fy * (1 - fx);
                        D(y1, x1) += g * fy * fx;
                    }
        for (size_t i = 0; i < dx.size(); i++) bwd = std::max(bwd, (double)fabsf(dx[i] - dx_ref[i]));
        char what[100];
        snprintf(what, sizeof what, "resize %dx%d -> %dx%d forward vs formula", ih, iw, oh, ow);
        check(what, fwd, 0.0);  // the same operations in the same order: bit for bit
        snprintf(what, sizeof what, "resize %dx%d -> %dx%d backward (gather) vs scatter", ih, iw, oh, ow);
        check(what, bwd, 1e-5);
    }
    {  // Fused uint8 + preprocessing = float resize, then each mode's map (models/src/preprocess.rs):
       // caffe RGB->BGR minus the means, tf x / 127.5 - 1, lite (x - 127) / 128.
        int ih = 32, iw = 32, oh = 224, ow = 224;
        std::vector<unsigned char> u(ih * iw * 3);
        for (auto& v : u) v = (unsigned char)((uniform(&seed) + 0.5f) * 255.0f);
        std::vector<float> xf(u.begin(), u.end()), yf(oh * ow * 3), yu(oh * ow * 3);
        resize_bilinear_forward_f32(xf.data(), yf.data(), 1, ih, iw, 3, oh, ow);
        const float mean[3] = {103.939f, 116.779f, 123.68f};
        for (int mode = 0; mode < 3; mode++) {
            if (mode == 0)
                resize_bilinear_u8_f32(u.data(), yu.data(), 1, ih, iw, oh, ow, 2, 1, 0, 1.0f, 1.0f,
                                       1.0f, mean[0], mean[1], mean[2]);
            else if (mode == 1)
                resize_bilinear_u8_f32(u.data(), yu.data(), 1, ih, iw, oh, ow, 0, 1, 2, 127.5f, 127.5f,
                                       127.5f, 1.0f, 1.0f, 1.0f);
            else
                resize_bilinear_u8_f32(u.data(), yu.data(), 1, ih, iw, oh, ow, 0, 1, 2, 128.0f, 128.0f,
                                       128.0f, 127.0f / 128.0f, 127.0f / 128.0f, 127.0f / 128.0f);
            double err = 0;
            for (int p = 0; p < oh * ow; p++)
                for (int k = 0; k < 3; k++) {
                    float want = mode == 0   ? yf[p * 3 + 2 - k] - mean[k]
                                 : mode == 1 ? yf[p * 3 + k] / 127.5f - 1.0f
                                             : (yf[p * 3 + k] - 127.0f) / 128.0f;
                    err = std::max(err, (double)fabsf(yu[p * 3 + k] - want));
                }
            const char* what[3] = {"resize u8 + caffe (fused) vs resize, then BGR - mean",
                                   "resize u8 + tf (fused) vs resize, then x / 127.5 - 1",
                                   "resize u8 + lite (fused) vs resize, then (x - 127) / 128"};
            check(what[mode], err, 0.0);
        }
    }
    {  // Adam, 5 steps, against Keras 3's formulas in f64.
        const int n = 4;
        float w[n] = {0.5f, -1.0f, 0.0f, 2.0f}, m[n] = {0}, v[n] = {0};
        double wd[n] = {0.5, -1.0, 0.0, 2.0}, md[n] = {0}, vd[n] = {0}, err = 0;
        const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-7;
        for (int t = 1; t <= 5; t++) {
            float g[n];
            for (auto& gi : g) gi = uniform(&seed);
            double lr_t = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
            adam_update_f32(w, g, m, v, n, (float)lr_t, (float)(1 - b1), (float)(1 - b2), (float)eps,
                            (float)lr, 0.0f, 0);
            for (int i = 0; i < n; i++) {
                md[i] += (g[i] - md[i]) * (1 - b1);
                vd[i] += ((double)g[i] * g[i] - vd[i]) * (1 - b2);
                wd[i] -= md[i] * lr_t / (sqrt(vd[i]) + eps);
            }
        }
        for (int i = 0; i < n; i++) err = std::max(err, fabs(w[i] - wd[i]));
        check("adam 5 steps vs Keras 3 formula in f64", err, 1e-6);
    }
    {  // Global pools over [2, 3, 4, 5]; a tie in the max pool goes to the first position.
        const int n = 2, hw = 12, c = 5;
        std::vector<float> x(n * hw * c), dy(n * c), y(n * c), dx(n * hw * c);
        std::vector<int> arg(n * c);
        for (auto& v : x) v = uniform(&seed);
        for (auto& v : dy) v = uniform(&seed);
        x[(0 * hw + 3) * c + 1] = 9.0f;  // image 0, channel 1: maximum at p = 3 and p = 7
        x[(0 * hw + 7) * c + 1] = 9.0f;
        global_max_pool_forward_f32(x.data(), y.data(), arg.data(), n, hw, c);
        global_max_pool_backward_f32(dy.data(), arg.data(), dx.data(), n, hw, c);
        double err = 0;
        for (int b = 0; b < n; b++)
            for (int j = 0; j < c; j++) {
                int best = 0;
                for (int p = 1; p < hw; p++)
                    if (x[(b * hw + p) * c + j] > x[(b * hw + best) * c + j]) best = p;
                for (int p = 0; p < hw; p++) {
                    float want = p == best ? dy[b * c + j] : 0.0f;
                    err = std::max(err, (double)fabsf(dx[(b * hw + p) * c + j] - want));
                }
                err = std::max(err, (double)fabsf(y[b * c + j] - x[(b * hw + best) * c + j]));
            }
        check("global max pool forward/backward, first-maximum tie rule", err, 0.0);
        check("global max pool tie picks p = 3 of {3, 7}", arg[1] == 3 ? 0.0 : 1.0, 0.0);
        global_avg_pool_forward_f32(x.data(), y.data(), n, hw, c);
        global_avg_pool_backward_f32(dy.data(), dx.data(), n, hw, c);
        err = 0;
        for (int b = 0; b < n; b++)
            for (int j = 0; j < c; j++) {
                double s = 0;
                for (int p = 0; p < hw; p++) {
                    s += x[(b * hw + p) * c + j];
                    err = std::max(err, (double)fabsf(dx[(b * hw + p) * c + j] - dy[b * c + j] / hw));
                }
                err = std::max(err, fabs(y[b * c + j] - s / hw));
            }
        check("global avg pool forward/backward", err, 1e-6);
    }
    {  // Adam with decoupled weight decay, 3 steps, against the CPU's f32 loop: bit for bit.
        const int n = 6;
        float w[n], m[n] = {0}, v[n] = {0}, wr[n], mr[n] = {0}, vr[n] = {0};
        for (int i = 0; i < n; i++) wr[i] = w[i] = uniform(&seed);
        const float lr = 1e-2f, wd = 0.1f, c1 = (float)(1 - 0.9), c2 = (float)(1 - 0.999), eps = 1e-7f;
        double err = 0;
        for (int t = 1; t <= 3; t++) {
            float g[n];
            for (auto& gi : g) gi = uniform(&seed);
            float lr_t = (float)(1e-2 * sqrt(1 - pow((double)0.999f, t)) / (1 - pow((double)0.9f, t)));
            adam_update_f32(w, g, m, v, n, lr_t, c1, c2, eps, lr, wd, 1);
            for (int i = 0; i < n; i++) {  // engine/src/optim/adam.rs, `update`
                float x = wr[i] - wr[i] * wd * lr;
                mr[i] = mr[i] + (g[i] - mr[i]) * c1;
                vr[i] = vr[i] + (g[i] * g[i] - vr[i]) * c2;
                wr[i] = x - (mr[i] * lr_t) / (sqrtf(vr[i]) + eps);
            }
        }
        for (int i = 0; i < n; i++) err = std::max(err, (double)fabsf(w[i] - wr[i]));
        check("adam + weight decay 3 steps vs the CPU's f32 loop", err, 0.0);
    }
    // SGD: plain, momentum, Nesterov, each with and without weight decay, 3
    // steps, against the CPU's f32 loop (engine/src/optim/sgd.rs): bit for bit.
    for (int variant = 0; variant < 6; variant++) {
        const int n = 7;
        const bool momentum = variant % 3 != 0, nesterov = variant % 3 == 2;
        const unsigned decay = variant >= 3;
        const float lr = 0.05f, mu = 0.9f, wd = decay ? 0.01f : 0.0f;
        float w[n], v[n] = {0}, wr[n], vr[n] = {0};
        for (int i = 0; i < n; i++) wr[i] = w[i] = uniform(&seed);
        for (int t = 0; t < 3; t++) {
            float g[n];
            for (auto& gi : g) gi = uniform(&seed);
            if (momentum)
                sgd_momentum_update_f32(w, g, v, n, lr, mu, wd, decay, nesterov);
            else
                sgd_update_f32(w, g, n, lr, wd, decay);
            for (int i = 0; i < n; i++) {
                float x = decay ? wr[i] - wr[i] * wd * lr : wr[i];
                if (!momentum) {
                    wr[i] = x - g[i] * lr;
                } else {
                    vr[i] = vr[i] * mu - g[i] * lr;
                    wr[i] = nesterov ? x + (vr[i] * mu - g[i] * lr) : x + vr[i];
                }
            }
        }
        double err = 0;
        for (int i = 0; i < n; i++) err = std::max(err, (double)fabsf(w[i] - wr[i]) + fabsf(v[i] - vr[i]));
        const char* names[3] = {"plain", "momentum", "Nesterov"};
        char what[100];
        snprintf(what, sizeof what, "sgd %s%s 3 steps vs the CPU's f32 loop", names[variant % 3],
                 decay ? " + weight decay" : "");
        check(what, err, 0.0);
    }
    {  // Broadcast [2, 1, 4] (op) [3, 1] -> [2, 3, 4], forward and both gradients, against loops.
        const int A = 2, B = 3, C = 4;
        std::vector<float> a(A * C), b(B), dy(A * B * C), y(A * B * C), ys(A * B * C);
        for (auto& x : a) x = uniform(&seed);
        for (auto& x : b) x = uniform(&seed);
        for (auto& x : dy) x = uniform(&seed);
        // a's strides over [2, 3, 4]: (4, 0, 1); b's: (0, 1, 0).
        BroadcastIndex p = {3, {A, B, C}, {{C, 0, 1}, {0, 1, 0}}};
        mul_broadcast_f32(a.data(), b.data(), y.data(), A * B * C, p);
        add_broadcast_f32(a.data(), b.data(), ys.data(), A * B * C, p);
        std::vector<float> da(A * C), db(B), da_sum(A * C), db_sum(B);
        broadcast_reduce_product_f32(dy.data(), b.data(), da.data(), A * C, p, 0);
        broadcast_reduce_product_f32(dy.data(), a.data(), db.data(), B, p, 1);
        broadcast_reduce_f32(dy.data(), da_sum.data(), A * C, p, 0);
        broadcast_reduce_f32(dy.data(), db_sum.data(), B, p, 1);
        std::vector<double> ra(A * C, 0.0), rb(B, 0.0), sa(A * C, 0.0), sb(B, 0.0);
        double fwd = 0, bwd = 0;
        for (int i = 0; i < A; i++)  // row-major output order, as the CPU's walk
            for (int j = 0; j < B; j++)
                for (int k = 0; k < C; k++) {
                    int o = (i * B + j) * C + k;
                    float av = a[i * C + k], bv = b[j], g = dy[o];
                    fwd = std::max(fwd, (double)fabsf(y[o] - av * bv) + fabsf(ys[o] - (av + bv)));
                    ra[i * C + k] += (double)(g * bv);
                    rb[j] += (double)(g * av);
                    sa[i * C + k] += g;
                    sb[j] += g;
                }
        for (int i = 0; i < A * C; i++)
            bwd = std::max(bwd, fabs(da[i] - (float)ra[i]) + fabs(da_sum[i] - (float)sa[i]));
        for (int j = 0; j < B; j++)
            bwd = std::max(bwd, fabs(db[j] - (float)rb[j]) + fabs(db_sum[j] - (float)sb[j]));
        check("add/mul broadcast [2,1,4] x [3,1] forward vs loops", fwd, 0.0);
        check("add/mul broadcast gradients vs f64 sums in output order", bwd, 0.0);
    }
    {  // A per-channel scale: mul_repeat_f32 and mul_f32 vs loops.
        const int rows = 5, c = 3;
        std::vector<float> x(rows * c), s(c), y(rows * c), z(rows * c);
        for (auto& v : x) v = uniform(&seed);
        for (auto& v : s) v = uniform(&seed);
        mul_repeat_f32(x.data(), s.data(), y.data(), rows * c, c);
        mul_f32(x.data(), y.data(), z.data(), rows * c);
        double err = 0;
        for (int i = 0; i < rows * c; i++)
            err = std::max(err, (double)fabsf(y[i] - x[i] * s[i % c]) + fabsf(z[i] - x[i] * y[i]));
        check("mul_repeat / mul same shapes vs loops", err, 0.0);
    }
    return failures == 0 ? 0 : 1;
}
