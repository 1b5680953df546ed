//! CUDA path for softmax and the fused softmax cross-entropy:
//! `kernels/src/softmax_cross_entropy.cu`, one warp per row (block (32, 4),
//! four rows per block). Row sums run in f32 here (f64 on the CPU).

use crate::cuda::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

/// One warp per row, four rows per block.
fn rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(4) as u32, 1, 1),
        block_dim: (32, 4, 1),
        shared_mem_bytes: 0,
    }
}

pub fn softmax(x: &CudaStorage, k: usize) -> Result<CudaStorage> {
    let dev = x.device();
    let rows = x.len() / k;
    let mut y = dev.alloc::<f32>(x.len())?;
    let (rows32, k32) = (rows as u32, k as u32);
    let f = dev.function("softmax_cross_entropy", "softmax_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y).arg(&rows32).arg(&k32);
    // SAFETY: (x [rows, k], y [rows, k], u32 rows, u32 k), one warp per row.
    unsafe { args.launch(rows_config(rows)) }.map_err(dev.error("softmax_forward_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

pub fn softmax_backward(y: &CudaStorage, dy: &CudaStorage, k: usize) -> Result<CudaStorage> {
    let dev = y.device();
    let rows = y.len() / k;
    let mut dx = dev.alloc::<f32>(y.len())?;
    let (rows32, k32) = (rows as u32, k as u32);
    let f = dev.function("softmax_cross_entropy", "softmax_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(y.slice())
        .arg(dy.slice())
        .arg(&mut dx)
        .arg(&rows32)
        .arg(&k32);
    // SAFETY: (y, dy, dx [rows, k], u32 rows, u32 k), one warp per row.
    unsafe { args.launch(rows_config(rows)) }.map_err(dev.error("softmax_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}

/// The mean loss (a one-element buffer), the probabilities, and the labels
/// on the GPU (both kept for the backward pass).
pub fn cross_entropy(
    logits: &CudaStorage,
    labels: &[usize],
    k: usize,
) -> Result<(CudaStorage, CudaStorage, CudaSlice<i32>)> {
    let dev = logits.device();
    let rows = labels.len();
    // Labels were checked to be < k on the host, so they fit an i32.
    let labels: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let labels = dev.upload(&labels)?;
    let mut probs = dev.alloc::<f32>(rows * k)?;
    let mut row_loss = dev.alloc::<f32>(rows)?;
    let (rows32, k32) = (rows as u32, k as u32);
    let f = dev.function("softmax_cross_entropy", "softmax_cross_entropy_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(logits.slice())
        .arg(&labels)
        .arg(&mut probs)
        .arg(&mut row_loss)
        .arg(&rows32)
        .arg(&k32);
    // SAFETY: (logits [rows, k], labels [rows], probs [rows, k], row_loss [rows], u32 rows, k).
    unsafe { args.launch(rows_config(rows)) }
        .map_err(dev.error("softmax_cross_entropy_forward_f32"))?;
    let mut loss = dev.alloc::<f32>(1)?;
    let f = dev.function("softmax_cross_entropy", "mean_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&row_loss).arg(&mut loss).arg(&rows32);
    let one_block = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: (x [rows], out [1], u32 rows), a single block of 256 threads as mean_f32 requires.
    unsafe { args.launch(one_block) }.map_err(dev.error("mean_f32"))?;
    Ok((
        CudaStorage::new(loss, dev),
        CudaStorage::new(probs, dev),
        labels,
    ))
}

/// dlogits = (p − onehot) · dloss / rows; dloss stays on the GPU.
pub fn cross_entropy_backward(
    probs: &CudaStorage,
    labels: &CudaSlice<i32>,
    dloss: &CudaStorage,
    k: usize,
) -> Result<CudaStorage> {
    let dev = probs.device();
    let rows = labels.len();
    let mut dx = dev.alloc::<f32>(rows * k)?;
    let (rows32, k32) = (rows as u32, k as u32);
    let f = dev.function(
        "softmax_cross_entropy",
        "softmax_cross_entropy_backward_f32",
    )?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(probs.slice())
        .arg(labels)
        .arg(dloss.slice())
        .arg(&mut dx)
        .arg(&rows32)
        .arg(&k32);
    // SAFETY: (probs [rows, k], labels [rows], dloss [1], dx [rows, k], u32 rows, k).
    unsafe { args.launch(launch_1d(rows * k)) }
        .map_err(dev.error("softmax_cross_entropy_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}
