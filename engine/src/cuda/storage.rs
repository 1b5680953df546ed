//! [`CudaStorage`]: a tensor's f32 values in one GPU's memory, with the
//! [`CudaDevice`] they live on. It is the `Storage::Cuda` arm of
//! [`crate::Storage`]; ops' `cuda.rs` files take and return it.
//!
//! Like CPU storage it is never changed after creation (kernels write only
//! into buffers they just allocated), so sharing it between tensors through
//! the tensor's `Arc` is safe.

use super::CudaDevice;
use crate::error::Result;
use cudarc::driver::CudaSlice;
use std::fmt;
use std::sync::Arc;

/// f32 values in GPU memory and the GPU holding them.
pub struct CudaStorage {
    data: CudaSlice<f32>,
    device: Arc<CudaDevice>,
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, {} f32)",
            self.ordinal(),
            self.len()
        )
    }
}

impl CudaStorage {
    /// Wraps a buffer allocated on `device` (by [`CudaDevice::alloc`] or cuBLAS/cuDNN output).
    pub fn new(data: CudaSlice<f32>, device: &Arc<CudaDevice>) -> CudaStorage {
        CudaStorage {
            data,
            device: device.clone(),
        }
    }

    /// Copies host values to a new buffer on `device`.
    pub fn from_host(device: &Arc<CudaDevice>, values: &[f32]) -> Result<CudaStorage> {
        Ok(CudaStorage::new(device.upload(values)?, device))
    }

    /// `n` copies of `value` on `device`.
    pub fn filled(device: &Arc<CudaDevice>, n: usize, value: f32) -> Result<CudaStorage> {
        Ok(CudaStorage::new(device.filled(n, value)?, device))
    }

    /// Copies the values to the host (waits for the work queued before).
    pub fn to_host(&self) -> Result<Vec<f32>> {
        self.device.download(&self.data)
    }

    /// The GPU holding the values.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// The GPU's ordinal (0 for the first).
    pub fn ordinal(&self) -> usize {
        self.device.info().ordinal
    }

    /// The device buffer, for kernel launches and cuBLAS/cuDNN calls.
    pub fn slice(&self) -> &CudaSlice<f32> {
        &self.data
    }

    /// Number of f32 values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
