// Zero padding of NHWC height and width (Keras ZeroPadding2D) and its
// backward pass, the crop back to the input's window.
//
// Math, x [n, h, w, c] padded to y [n, ph, pw, c] = [n, top + h + bottom, left + w + right, c]:
//   zero_pad2d_forward_f32:  y[b, i, j, ch] = x[b, i - top, j - left, ch] when inside x, else 0
//   zero_pad2d_backward_f32: dx[b, i, j, ch] = dy[b, i + top, j + left, ch]
//
// Launch geometry: 1-D grid-stride loops, over y (forward) or dx (backward);
// consecutive threads take consecutive channels.

extern "C" __global__ void zero_pad2d_forward_f32(const float* x, float* y, int n, int h, int w,
                                                  int c, int top, int left, int ph, int pw) {
    unsigned long long total = (unsigned long long)n * ph * pw * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int j = (int)(pix % pw) - left, r = (int)((pix / pw) % ph) - top;
        unsigned long long b = pix / ((unsigned long long)pw * ph);
        bool inside = r >= 0 && r < h && j >= 0 && j < w;
        y[i] = inside ? x[((b * h + r) * w + j) * c + ch] : 0.0f;
    }
}

extern "C" __global__ void zero_pad2d_backward_f32(const float* dy, float* dx, int n, int h,
                                                   int w, int c, int top, int left, int ph,
                                                   int pw) {
    unsigned long long total = (unsigned long long)n * h * w * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        unsigned long long pix = i / c;
        int j = (int)(pix % w), r = (int)((pix / w) % h);
        unsigned long long b = pix / ((unsigned long long)w * h);
        dx[i] = dy[((b * ph + r + top) * pw + j + left) * c + ch];
    }
}
