// Filter layout for cuDNN's NHWC convolutions. conv2d itself runs in cuDNN;
// this file only moves the kernel between Keras's layout and cuDNN's.
//
// Keras stores a conv kernel HWIO [kh, kw, c_in, c_out]; cuDNN's NHWC filter
// format is OHWI [c_out, kh, kw, c_in] (KRSC). Seen as matrices, HWIO is
// [kh * kw * c_in, c_out] and OHWI is [c_out, kh * kw * c_in]: one is the
// other's transpose, so one kernel serves both directions:
//   transpose_f32: y[j, i] = x[i, j]   for x [rows, cols], y [cols, rows]
// HWIO -> OHWI: rows = kh * kw * c_in, cols = c_out (before each cuDNN call);
// OHWI -> HWIO: rows = c_out, cols = kh * kw * c_in (the filter gradient after).
//
// Launch geometry: 1-D grid-stride loop over the rows * cols outputs; each
// thread writes consecutive y (coalesced writes, strided reads). Kernels are
// at most a few million values, so this simple form is enough.

extern "C" __global__ void transpose_f32(const float* x, float* y, unsigned int rows,
                                         unsigned int cols) {
    unsigned long long total = (unsigned long long)rows * cols;
    for (unsigned long long o = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         o < total; o += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long j = o / rows, i = o % rows;  // y[j, i]
        y[o] = x[i * cols + j];
    }
}
