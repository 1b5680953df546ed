//! [`CudaStorage`]: a tensor's f32 values in one GPU's memory, with the
//! [`CudaDevice`] they live on. It is the `Storage::Cuda` arm of
//! [`crate::Storage`]; ops' `cuda.rs` files take and return it.
//!
//! Like CPU storage it is never changed after creation (kernels write only
//! into buffers they just allocated), so sharing it between tensors through
//! the tensor's `Arc` is safe.
//!
//! **Derived copies.** Because the values never change, a copy of them in
//! another layout or number format, once made, stays right for the
//! storage's whole life. [`CudaStorage::derived`] keeps such copies with the
//! storage, keyed by [`DerivedKey`] (which op wanted it, for which shape, in
//! which [`Precision`]): conv2d keeps its kernel's cuDNN filter there (HWIO
//! transposed to OHWI, in f32, f16 or bf16), made on the first call and
//! reused by every later one. An optimizer step makes new storage (new
//! values), which starts with no copies; the old copies are freed with the
//! old storage. The cost is GPU memory: one more copy of each conv kernel
//! per precision used (f32: as much as the kernel itself).

use super::CudaDevice;
use crate::error::Result;
use crate::precision::Precision;
use cudarc::driver::CudaSlice;
use std::fmt;
use std::sync::{Arc, Mutex};

/// f32 values in GPU memory and the GPU holding them.
pub struct CudaStorage {
    data: CudaSlice<f32>,
    device: Arc<CudaDevice>,
    derived: OnceMap<DerivedKey, DeviceBuffer>,
}

/// What a derived copy of a storage is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DerivedKey {
    /// What the copy is, e.g. "conv2d OHWI filter".
    pub what: &'static str,
    /// The dimensions the copy was made for (conv2d: the HWIO kernel's).
    pub dims: [usize; 4],
    /// The number format of the copy.
    pub precision: Precision,
}

/// GPU values in one of the formats of [`Precision`].
#[derive(Debug)]
pub enum DeviceBuffer {
    /// f32 values.
    F32(CudaSlice<f32>),
    /// IEEE half-precision values.
    F16(CudaSlice<half::f16>),
    /// bfloat16 values.
    Bf16(CudaSlice<half::bf16>),
}

/// Values made once per key and shared afterwards: a small map behind a
/// lock (a storage holds one or two entries). An error while making a value
/// is returned and nothing is kept, so the next call tries again.
pub struct OnceMap<K, V> {
    entries: Mutex<Vec<(K, Arc<V>)>>,
}

impl<K: PartialEq, V> OnceMap<K, V> {
    /// An empty map.
    pub fn new() -> OnceMap<K, V> {
        OnceMap {
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The value for `key`, made by `make` if there is none yet.
    pub fn get_or_try_make(&self, key: K, make: impl FnOnce() -> Result<V>) -> Result<Arc<V>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, v)) = entries.iter().find(|(k, _)| *k == key) {
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        entries.push((key, v.clone()));
        Ok(v)
    }

    /// How many values have been made.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no value has been made yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: PartialEq, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap::new()
    }
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
            derived: OnceMap::new(),
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

    /// The copy of these values that `key` names, made by `make` on the
    /// first call and kept with the storage for every later one (see the
    /// module docs).
    pub fn derived(
        &self,
        key: DerivedKey,
        make: impl FnOnce() -> Result<DeviceBuffer>,
    ) -> Result<Arc<DeviceBuffer>> {
        self.derived.get_or_try_make(key, make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_derived_value_is_made_once_per_key_and_errors_are_not_kept() {
        let map: OnceMap<DerivedKey, Vec<f32>> = OnceMap::new();
        let key = |dims, precision| DerivedKey {
            what: "conv2d OHWI filter",
            dims,
            precision,
        };
        let made = std::cell::Cell::new(0);
        let make = |v: f32| {
            made.set(made.get() + 1);
            Ok(vec![v])
        };
        let f32_filter = map
            .get_or_try_make(key([3, 3, 4, 8], Precision::F32), || make(1.0))
            .unwrap();
        // The same key again: the first value, not made again.
        let again = map
            .get_or_try_make(key([3, 3, 4, 8], Precision::F32), || make(2.0))
            .unwrap();
        assert!(Arc::ptr_eq(&f32_filter, &again));
        assert_eq!(*again, vec![1.0]);
        // Another precision or another layout of the same values: a value of its own.
        let f16_filter = map
            .get_or_try_make(key([3, 3, 4, 8], Precision::F16), || make(3.0))
            .unwrap();
        assert_eq!(*f16_filter, vec![3.0]);
        let other_layout = map
            .get_or_try_make(key([1, 1, 36, 8], Precision::F32), || make(4.0))
            .unwrap();
        assert_eq!(*other_layout, vec![4.0]);
        assert_eq!((made.get(), map.len()), (3, 3));
        // A failed make is returned and not kept: the next call makes it.
        let failed = map.get_or_try_make(key([3, 3, 4, 8], Precision::Bf16), || {
            Err(Error::Cuda("out of memory".into()))
        });
        assert!(failed.is_err());
        assert_eq!(map.len(), 3);
        let bf16_filter = map
            .get_or_try_make(key([3, 3, 4, 8], Precision::Bf16), || make(5.0))
            .unwrap();
        assert_eq!(
            (bf16_filter.as_slice(), made.get(), map.len()),
            (&[5.0][..], 4, 4)
        );
    }
}
