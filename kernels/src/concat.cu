// Concatenation along the last (channel) axis (Keras Concatenate(axis=-1))
// and its backward pass, the slice of dy that belongs to one input.
//
// Math, inputs x_i [rows, c_i] (rows = product of the leading dims, n*h*w for
// NHWC), y [rows, c_out] with c_out = sum of the c_i, input i at column
// offset = c_0 + ... + c_{i-1}:
//   concat_forward_f32:  y[r, offset + ch] = x_i[r, ch]      (one launch per input)
//   concat_backward_f32: dx_i[r, ch] = dy[r, offset + ch]    (one launch per input)
//
// Launch geometry: 1-D grid-stride loops over the input's rows * c elements
// (x_i forward, dx_i backward); consecutive threads take consecutive channels.

extern "C" __global__ void concat_forward_f32(const float* x, float* y, unsigned long long rows,
                                              int c_out, int offset, int c) {
    unsigned long long total = rows * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long r = i / c;
        int ch = (int)(i % c);
        y[r * c_out + offset + ch] = x[i];
    }
}

extern "C" __global__ void concat_backward_f32(const float* dy, float* dx,
                                               unsigned long long rows, int c_out, int offset,
                                               int c) {
    unsigned long long total = rows * c;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long r = i / c;
        int ch = (int)(i % c);
        dx[i] = dy[r * c_out + offset + ch];
    }
}
