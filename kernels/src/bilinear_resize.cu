// Bilinear resize of NHWC images with half-pixel centres, as tf.image.resize
// (method "bilinear", antialias off, TensorFlow's ResizeBilinear with
// half_pixel_centers=True), and its backward pass. The input side is also
// fused with the conversion from uint8 and Keras's preprocess_input.
//
// Math, along one axis (rows; columns the same), input size in_h, output
// size out_h, scale = in_h / out_h:
//   src(o)  = max((o + 0.5) * scale - 0.5, 0)     (centre of output o in input coordinates)
//   lo(o)   = min(floor(src), in_h - 1)
//   hi(o)   = min(lo + 1, in_h - 1)
//   lerp(o) = src - lo
//   y[b, oy, ox, ch] = (1 - ly) * ((1 - lx) x[lo_y, lo_x] + lx x[lo_y, hi_x])
//                    +      ly  * ((1 - lx) x[hi_y, lo_x] + lx x[hi_y, hi_x])
// Backward: y is linear in x, each output spreads its gradient over the (at
// most) four inputs it read, with the same weights:
//   dx[b, iy, ix, ch] = sum_{oy, ox} wy(oy, iy) * wx(ox, ix) * dy[b, oy, ox, ch],
//   wy(oy, iy) = (lo(oy) == iy ? 1 - ly : 0) + (hi(oy) == iy ? ly : 0)
// (both terms count when lo == hi, so the weights of an output always sum to 1).
//
// Fused input kernel (uint8 RGB in, float out, Keras's
// imagenet_utils.preprocess_input): each output channel c reads input
// channel src[c], then is divided and shifted,
//   y[.., c] = resize(x)[.., src[c]] / div[c] - off[c]
// with (src, div, off) given by the model's preprocessing
// (models::Preprocessing::pixel_map):
//   caffe: src = (2, 1, 0) (RGB -> BGR), div = 1,     off = (103.939, 116.779, 123.68)
//   tf:    src = (0, 1, 2),              div = 127.5, off = 1         (x / 127.5 - 1)
//   lite:  src = (0, 1, 2),              div = 128,   off = 127 / 128 ((x - 127) / 128)
// Keras resizes first and preprocesses after, as here: the resize runs on the
// uint8 values, the map on the resized floats, without writing the float
// image in between.
// Scales, weights and the forward's products are computed in f32 with the
// operations of the CPU reference (engine/src/ops/bilinear_resize/cpu.rs), one
// for one, so the forward equals the CPU's bit for bit. The _rn intrinsics
// (round to nearest) keep the compiler from contracting a multiply and an add
// into one FMA, which rounds once instead of twice and would move a weight by
// an ulp: at coordinates near 32 that is 4e-6, times a pixel step of up to
// 255 it was 5e-4 in the output.
//
// Launch geometry:
//   resize_bilinear_forward_f32: one thread per output element
//     (b, oy, ox, ch), 1-D grid-stride loop over n * out_h * out_w * c;
//     consecutive threads take consecutive channels.
//   resize_bilinear_u8_f32: one thread per output pixel (b, oy, ox),
//     writing its 3 channels; 1-D grid-stride loop over n * out_h * out_w.
//   resize_bilinear_backward_f32: one thread per input element
//     (b, iy, ix, ch) gathering from the window of outputs that read it
//     (about (2 / scale + 3)^2 of them): every dx element is written once, no
//     atomics, so the result is deterministic.

struct Lerp {
    int lo, hi;
    float frac;
};

__device__ float axis_scale(int in_size, int out_size) {
    return __fdiv_rn((float)in_size, (float)out_size);
}

__device__ Lerp axis_lerp(int o, float scale, int in_size) {
    float src = fmaxf(__fsub_rn(__fmul_rn(__fadd_rn((float)o, 0.5f), scale), 0.5f), 0.0f);
    Lerp l;
    l.lo = min((int)floorf(src), in_size - 1);
    l.hi = min(l.lo + 1, in_size - 1);
    l.frac = __fsub_rn(src, (float)l.lo);
    return l;
}

// a * (1 - w) + b * w, rounded after each operation as on the CPU.
__device__ float lerp(float a, float b, float w) {
    return __fadd_rn(__fmul_rn(a, __fsub_rn(1.0f, w)), __fmul_rn(b, w));
}

// Weight of input i in output o along one axis (0 when o does not read i).
__device__ float axis_weight(int o, int i, float scale, int in_size) {
    Lerp l = axis_lerp(o, scale, in_size);
    return (l.lo == i ? 1.0f - l.frac : 0.0f) + (l.hi == i ? l.frac : 0.0f);
}

// The outputs o whose window can touch input i: |src(o) - i| < 1, widened by
// one on each side against rounding, and out to the border for the edge
// inputs (which also receive the clamped samples).
__device__ void output_range(int i, float scale, int in_size, int out_size, int* first,
                             int* last) {
    int a = (int)floorf(((float)i - 0.5f) / scale - 0.5f) - 1;
    int b = (int)ceilf(((float)i + 1.5f) / scale - 0.5f) + 1;
    *first = i == 0 ? 0 : max(a, 0);
    *last = i == in_size - 1 ? out_size - 1 : min(b, out_size - 1);
}

extern "C" __global__ void resize_bilinear_forward_f32(const float* x, float* y, int n, int in_h,
                                                       int in_w, int c, int out_h, int out_w) {
    const float sy = axis_scale(in_h, out_h), sx = axis_scale(in_w, out_w);
    unsigned long long total = (unsigned long long)n * out_h * out_w * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int ox = (int)(pix % out_w);
        int oy = (int)((pix / out_w) % out_h);
        unsigned long long b = pix / ((unsigned long long)out_w * out_h);
        Lerp ly = axis_lerp(oy, sy, in_h), lx = axis_lerp(ox, sx, in_w);
        const float* img = x + b * in_h * in_w * c + ch;
        float top_left = img[((unsigned long long)ly.lo * in_w + lx.lo) * c];
        float top_right = img[((unsigned long long)ly.lo * in_w + lx.hi) * c];
        float bottom_left = img[((unsigned long long)ly.hi * in_w + lx.lo) * c];
        float bottom_right = img[((unsigned long long)ly.hi * in_w + lx.hi) * c];
        y[i] = lerp(lerp(top_left, top_right, lx.frac), lerp(bottom_left, bottom_right, lx.frac),
                    ly.frac);
    }
}

extern "C" __global__ void resize_bilinear_u8_f32(const unsigned char* x, float* y, int n,
                                                  int in_h, int in_w, int out_h, int out_w,
                                                  int src0, int src1, int src2, float div0,
                                                  float div1, float div2, float off0,
                                                  float off1, float off2) {
    const float sy = axis_scale(in_h, out_h), sx = axis_scale(in_w, out_w);
    const int src[3] = {src0, src1, src2};
    const float div[3] = {div0, div1, div2};
    const float off[3] = {off0, off1, off2};
    unsigned long long total = (unsigned long long)n * out_h * out_w;
    for (unsigned long long pix = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         pix < total; pix += (unsigned long long)gridDim.x * blockDim.x) {
        int ox = (int)(pix % out_w);
        int oy = (int)((pix / out_w) % out_h);
        unsigned long long b = pix / ((unsigned long long)out_w * out_h);
        Lerp ly = axis_lerp(oy, sy, in_h), lx = axis_lerp(ox, sx, in_w);
        const unsigned char* img = x + b * in_h * in_w * 3;
        for (int out_ch = 0; out_ch < 3; ++out_ch) {
            int in_ch = src[out_ch];
            float top_left = (float)img[((unsigned long long)ly.lo * in_w + lx.lo) * 3 + in_ch];
            float top_right = (float)img[((unsigned long long)ly.lo * in_w + lx.hi) * 3 + in_ch];
            float bottom_left = (float)img[((unsigned long long)ly.hi * in_w + lx.lo) * 3 + in_ch];
            float bottom_right =
                (float)img[((unsigned long long)ly.hi * in_w + lx.hi) * 3 + in_ch];
            float resized = lerp(lerp(top_left, top_right, lx.frac),
                                 lerp(bottom_left, bottom_right, lx.frac), ly.frac);
            y[pix * 3 + out_ch] = __fsub_rn(__fdiv_rn(resized, div[out_ch]), off[out_ch]);
        }
    }
}

extern "C" __global__ void resize_bilinear_backward_f32(const float* dy, float* dx, int n,
                                                        int in_h, int in_w, int c, int out_h,
                                                        int out_w) {
    const float sy = axis_scale(in_h, out_h), sx = axis_scale(in_w, out_w);
    unsigned long long total = (unsigned long long)n * in_h * in_w * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int ix = (int)(pix % in_w);
        int iy = (int)((pix / in_w) % in_h);
        unsigned long long b = pix / ((unsigned long long)in_w * in_h);
        int oy0, oy1, ox0, ox1;
        output_range(iy, sy, in_h, out_h, &oy0, &oy1);
        output_range(ix, sx, in_w, out_w, &ox0, &ox1);
        const float* grad = dy + b * out_h * out_w * c + ch;
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy) {
            float wy = axis_weight(oy, iy, sy, in_h);
            if (wy == 0.0f) continue;
            for (int ox = ox0; ox <= ox1; ++ox) {
                float wx = axis_weight(ox, ix, sx, in_w);
                if (wx != 0.0f) s += wy * wx * grad[((unsigned long long)oy * out_w + ox) * c];
            }
        }
        dx[i] = s;
    }
}
