//! The tensor: a shape, contiguous row-major storage on one device, and (when
//! it takes part in autograd) a link to the tape entry that produced it.
//!
//! Layouts follow Keras so its weights load without transposes on the CPU:
//! images are NHWC, conv kernels HWIO `[kh, kw, in, out]`, dense kernels
//! `[in, out]`. A tensor's data never changes after creation; optimizers
//! replace a parameter's tensor instead (see [`crate::Param`]).

use crate::autograd::{self, GradFn};
use crate::element::Element;
use crate::error::{Error, Result};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float (models).
    F32,
    /// 64-bit IEEE float (gradient checks).
    F64,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::F32 => write!(f, "f32"),
            DType::F64 => write!(f, "f64"),
        }
    }
}

/// Where a tensor's data lives. Each op matches on this to pick its CPU
/// reference code or its CUDA path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; the reference implementation of every op.
    Cpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
        }
    }
}

/// Host memory, one vector per element type.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuStorage {
    /// 32-bit values.
    F32(Vec<f32>),
    /// 64-bit values.
    F64(Vec<f64>),
}

impl CpuStorage {
    /// The element type held.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor's data on its device.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Data in host memory.
    Cpu(CpuStorage),
}

impl Storage {
    /// The device holding the data.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }
    /// The element type held.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
        }
    }
}

/// Runs one generic CPU expression for whichever element type `$storage`
/// holds: `$v` is bound to the typed slice and `$T` to its type, and the
/// expression must produce a `Vec<$T>`, which is wrapped back as storage.
#[macro_export]
macro_rules! map_cpu {
    ($storage:expr, |$v:ident : $T:ident| $body:expr) => {
        match $storage {
            $crate::CpuStorage::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                $crate::CpuStorage::F32($body)
            }
            $crate::CpuStorage::F64($v) => {
                #[allow(dead_code)]
                type $T = f64;
                $crate::CpuStorage::F64($body)
            }
        }
    };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Every tensor gets a fresh id; autograd uses it to find a tensor's gradient.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) grad_fn: Option<Arc<GradFn>>,
}

/// An n-dimensional array. Cloning is cheap (reference counted).
#[derive(Clone)]
pub struct Tensor {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, dtype={}, device={}, requires_grad={})",
            self.shape(),
            self.dtype(),
            self.device(),
            self.requires_grad()
        )
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor with no autograd history, from storage and shape.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        let len = match &storage {
            Storage::Cpu(s) => s.len(),
        };
        if len != numel(shape) {
            return Err(Error::shape(
                "tensor",
                format!(
                    "{len} elements cannot have shape {shape:?} ({} elements)",
                    numel(shape)
                ),
            ));
        }
        Ok(Tensor::new_unchecked(
            Arc::new(storage),
            shape.to_vec(),
            None,
        ))
    }

    pub(crate) fn new_unchecked(
        storage: Arc<Storage>,
        shape: Vec<usize>,
        grad_fn: Option<Arc<GradFn>>,
    ) -> Tensor {
        Tensor {
            inner: Arc::new(Inner {
                id: next_id(),
                shape,
                storage,
                grad_fn,
            }),
        }
    }

    /// A CPU tensor from a vector of f32 or f64 values.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_storage(Storage::Cpu(T::wrap(data)), shape)
    }

    /// A CPU tensor from a slice.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A CPU tensor filled with `value`.
    pub fn full(value: f64, shape: &[usize], dtype: DType) -> Tensor {
        let n = numel(shape);
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; n]),
            DType::F64 => CpuStorage::F64(vec![value; n]),
        };
        Tensor::new_unchecked(Arc::new(Storage::Cpu(storage)), shape.to_vec(), None)
    }

    /// A CPU tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(0.0, shape, dtype)
    }

    /// A CPU tensor of ones.
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(1.0, shape, dtype)
    }

    /// A scalar (shape `[]`).
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(value, &[], dtype)
    }

    /// A tensor of zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Tensor {
        match self.device() {
            Device::Cpu => Tensor::zeros(self.shape(), self.dtype()),
        }
    }

    /// Unique id of this tensor value (a new one for every op output).
    pub fn id(&self) -> u64 {
        self.inner.id
    }
    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.inner.shape.len()
    }
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        numel(&self.inner.shape)
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.inner.storage.dtype()
    }
    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.inner.storage.device()
    }
    /// The data.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }
    pub(crate) fn storage_arc(&self) -> &Arc<Storage> {
        &self.inner.storage
    }

    /// The CPU storage, or an error naming `op` if the tensor is elsewhere.
    pub fn cpu_storage(&self, _op: &'static str) -> Result<&CpuStorage> {
        match self.storage() {
            Storage::Cpu(s) => Ok(s),
        }
    }

    /// The data as a typed CPU slice; errors if the dtype or device differs.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        let s = self.cpu_storage("as_slice")?;
        T::unwrap(s).ok_or_else(|| {
            Error::dtype(
                "as_slice",
                format!("tensor holds {}, asked for {}", s.dtype(), T::DTYPE),
            )
        })
    }

    /// The values as f32 on the host, converting from any dtype or device.
    pub fn to_vec_f32(&self) -> Vec<f32> {
        match self.storage() {
            Storage::Cpu(CpuStorage::F32(v)) => v.clone(),
            Storage::Cpu(CpuStorage::F64(v)) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as f64 on the host, converting from any dtype or device.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        match self.storage() {
            Storage::Cpu(CpuStorage::F32(v)) => v.iter().map(|&x| x as f64).collect(),
            Storage::Cpu(CpuStorage::F64(v)) => v.clone(),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!(
                    "tensor of shape {:?} has {} elements, expected 1",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        Ok(self.to_vec_f64()[0])
    }

    /// A copy converted to `dtype`, without autograd history.
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.detach();
        }
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(self.to_vec_f32()),
            DType::F64 => CpuStorage::F64(self.to_vec_f64()),
        };
        Tensor::new_unchecked(Arc::new(Storage::Cpu(storage)), self.shape().to_vec(), None)
    }

    /// The same data with no autograd history (gradients stop here).
    pub fn detach(&self) -> Tensor {
        Tensor::new_unchecked(self.inner.storage.clone(), self.shape().to_vec(), None)
    }

    /// Whether gradients flow back through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.grad_fn.is_some()
    }

    pub(crate) fn grad_fn(&self) -> Option<&Arc<GradFn>> {
        self.inner.grad_fn.as_ref()
    }

    /// Name of the op that produced this tensor on the tape, if any.
    pub fn op_name(&self) -> Option<&'static str> {
        self.grad_fn().map(|g| g.name())
    }

    /// Reverse-mode autograd from this scalar: fills the `.grad()` of every
    /// trainable [`crate::Param`] it depends on (accumulating into what is there).
    pub fn backward(&self) -> Result<()> {
        autograd::backward(self)
    }

    /// Checks the rank and returns the dims, with an error naming `op`.
    pub fn dims<const R: usize>(&self, op: &'static str, what: &str) -> Result<[usize; R]> {
        let s = self.shape();
        if s.len() != R {
            return Err(Error::shape(
                op,
                format!("{what} has rank {} ({s:?}), expected rank {R}", s.len()),
            ));
        }
        let mut d = [0usize; R];
        d.copy_from_slice(s);
        Ok(d)
    }

    /// Errors naming `op` unless every element is finite (NaN and ±inf fail).
    pub fn check_finite(&self, op: &'static str, what: &str) -> Result<()> {
        let bad = match self.cpu_storage(op)? {
            CpuStorage::F32(v) => v.iter().position(|x| !x.is_finite()),
            CpuStorage::F64(v) => v.iter().position(|x| !x.is_finite()),
        };
        match bad {
            Some(i) => Err(Error::non_finite(
                op,
                format!(
                    "{what} (shape {:?}) has a non-finite value at flat index {i}",
                    self.shape()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Errors naming `op` unless both tensors have the same dtype and device.
pub fn same_kind(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::dtype(
            op,
            format!("operands are {} and {}", a.dtype(), b.dtype()),
        ));
    }
    if a.device() != b.device() {
        return Err(Error::invalid(
            op,
            format!("operands are on {} and {}", a.device(), b.device()),
        ));
    }
    Ok(())
}
