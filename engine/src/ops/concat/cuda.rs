//! CUDA path for concat: `kernels/src/concat.cu`, one launch per input, one
//! thread per element of that input (forward: into its columns of y;
//! backward: out of its columns of dy).

use super::cpu::Columns;
use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

/// `rows` and `c_out`, `offset`, `c`, as the kernels take them.
fn kernel_args(cols: &Columns) -> (u64, [i32; 3]) {
    let ints = [cols.c_out, cols.offset, cols.c].map(|d| d as i32);
    (cols.rows as u64, ints)
}

/// `xs` (each `[rows, c_i]`, all on one GPU, checked in `mod.rs`) side by side.
pub fn forward(xs: &[&CudaStorage], rows: usize) -> Result<CudaStorage> {
    let dev = xs[0].device();
    let widths: Vec<usize> = xs.iter().map(|x| x.len() / rows).collect();
    let c_out = widths.iter().sum();
    let mut y = dev.alloc::<f32>(rows * c_out)?;
    let f = dev.function("concat", "concat_forward_f32")?;
    let mut offset = 0;
    for (x, &c) in xs.iter().zip(&widths) {
        let (rows64, ints) = kernel_args(&Columns {
            rows,
            c_out,
            offset,
            c,
        });
        let mut args = dev.stream().launch_builder(&f);
        args.arg(x.slice()).arg(&mut y).arg(&rows64);
        for s in &ints {
            args.arg(s);
        }
        // SAFETY: (x [rows, c], y [rows, c_out], u64 rows, 3 ints), offset + c <= c_out;
        // grid-stride over x.
        unsafe { args.launch(launch_1d(rows * c)) }.map_err(dev.error("concat_forward_f32"))?;
        offset += c;
    }
    Ok(CudaStorage::new(y, dev))
}

/// The `[rows, c]` block of `dy` `[rows, c_out]` at column `offset`.
pub fn slice(dy: &CudaStorage, cols: &Columns) -> Result<CudaStorage> {
    let dev = dy.device();
    let mut dx = dev.alloc::<f32>(cols.rows * cols.c)?;
    let (rows64, ints) = kernel_args(cols);
    let f = dev.function("concat", "concat_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice()).arg(&mut dx).arg(&rows64);
    for s in &ints {
        args.arg(s);
    }
    // SAFETY: (dy [rows, c_out], dx [rows, c], u64 rows, 3 ints), grid-stride over dx.
    unsafe { args.launch(launch_1d(cols.rows * cols.c)) }
        .map_err(dev.error("concat_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}
