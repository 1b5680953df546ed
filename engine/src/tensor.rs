//! The tensor: a shape, contiguous row-major storage on one device, and (when
//! it takes part in autograd) a link to the tape entry that produced it.
//!
//! Layouts follow Keras so its weights load without transposes on the CPU:
//! images are NHWC, conv kernels HWIO `[kh, kw, in, out]`, dense kernels
//! `[in, out]`. A tensor's data never changes after creation; optimizers
//! replace a parameter's tensor instead (see [`crate::Param`]).
//!
//! A tensor lives on one [`Device`]: the CPU (host memory, any [`DType`]) or
//! a CUDA GPU (f32 only, [`CudaStorage`]). [`Tensor::to_device`] copies
//! between them; ops take operands on one device and give their result
//! there, and refuse mixed devices with an error that says how to fix it.
//! Reading values back ([`Tensor::to_vec_f32`]) works from either device.

use crate::autograd::{self, GradFn};
use crate::cuda::CudaStorage;
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
    /// CUDA GPU number `.0` (0 for the first), f32 tensors only.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
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
#[derive(Debug)]
pub enum Storage {
    /// Data in host memory.
    Cpu(CpuStorage),
    /// f32 data in a GPU's memory.
    Cuda(CudaStorage),
}

impl Storage {
    /// The device holding the data.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
        }
    }
    /// The element type held.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(_) => DType::F32,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let len = storage.len();
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
            DType::F32 => CpuStorage::F32(crate::ops::parallel::filled(n, value as f32)),
            DType::F64 => CpuStorage::F64(crate::ops::parallel::filled(n, value)),
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

    /// A tensor filled with `value` on `device` (errors for a GPU that
    /// cannot be opened, or a dtype other than f32 on a GPU).
    pub fn full_on(value: f64, shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Tensor::full(value, shape, dtype)),
            Device::Cuda(ordinal) => {
                cuda_dtype("full_on", dtype)?;
                let dev = crate::cuda::CudaDevice::open(ordinal)?;
                let s = CudaStorage::filled(&dev, numel(shape), value as f32)?;
                Tensor::from_storage(Storage::Cuda(s), shape)
            }
        }
    }

    /// A tensor of zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::full_on(0.0, self.shape(), self.dtype(), self.device())
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
    pub fn cpu_storage(&self, op: &'static str) -> Result<&CpuStorage> {
        match self.storage() {
            Storage::Cpu(s) => Ok(s),
            Storage::Cuda(s) => Err(Error::unsupported(
                op,
                format!(
                    "tensor {:?} is on cuda:{} but this reads host memory; copy it with \
                     .to_device(Device::Cpu) first",
                    self.shape(),
                    s.ordinal()
                ),
            )),
        }
    }

    /// The GPU storage, or an error naming `op` if the tensor is on the host.
    pub fn cuda_storage(&self, op: &'static str) -> Result<&CudaStorage> {
        match self.storage() {
            Storage::Cuda(s) => Ok(s),
            Storage::Cpu(_) => Err(Error::invalid(
                op,
                format!(
                    "tensor {:?} is on the cpu where a GPU tensor was expected; move it with \
                     .to_device(Device::Cuda(0)) first",
                    self.shape()
                ),
            )),
        }
    }

    /// A copy of this tensor's values on `device`, without autograd history
    /// (model inputs and parameters move once, before the forward pass).
    /// The same device gives the same data back without a copy. GPU tensors
    /// are f32: an f64 tensor must be converted with [`Tensor::to_dtype`] first.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        const OP: &str = "to_device";
        if device == self.device() {
            return Ok(self.detach());
        }
        let storage = match device {
            // From a GPU, so f32.
            Device::Cpu => Storage::Cpu(CpuStorage::F32(self.try_to_vec_f32()?)),
            Device::Cuda(ordinal) => {
                cuda_dtype(OP, self.dtype())?;
                let dev = crate::cuda::CudaDevice::open(ordinal)?;
                // From the host, or from another GPU through the host (rare, never per batch).
                Storage::Cuda(CudaStorage::from_host(&dev, &self.try_to_vec_f32()?)?)
            }
        };
        Tensor::from_storage(storage, self.shape())
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
    ///
    /// # Panics
    /// Only if copying from a GPU fails (a crashed or lost device); use
    /// [`Tensor::try_to_vec_f32`] to get that as an error.
    pub fn to_vec_f32(&self) -> Vec<f32> {
        self.try_to_vec_f32()
            .unwrap_or_else(|e| panic!("to_vec_f32: copying {self:?} to the host failed: {e}"))
    }

    /// [`Tensor::to_vec_f32`], with a failed GPU copy as an error.
    pub fn try_to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.storage() {
            Storage::Cpu(CpuStorage::F32(v)) => v.clone(),
            Storage::Cpu(CpuStorage::F64(v)) => v.iter().map(|&x| x as f32).collect(),
            Storage::Cuda(s) => s.to_host()?,
        })
    }

    /// The values as f64 on the host, converting from any dtype or device.
    ///
    /// # Panics
    /// Only if copying from a GPU fails, as [`Tensor::to_vec_f32`].
    pub fn to_vec_f64(&self) -> Vec<f64> {
        match self.storage() {
            Storage::Cpu(CpuStorage::F32(v)) => v.iter().map(|&x| x as f64).collect(),
            Storage::Cpu(CpuStorage::F64(v)) => v.clone(),
            Storage::Cuda(_) => self.to_vec_f32().iter().map(|&x| x as f64).collect(),
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

    /// A copy converted to `dtype`, without autograd history. Errors for a
    /// GPU tensor converted to anything but f32 (GPU tensors are f32).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.detach());
        }
        let storage = match (self.storage(), dtype) {
            (Storage::Cpu(_), DType::F32) => CpuStorage::F32(self.to_vec_f32()),
            (Storage::Cpu(_), DType::F64) => CpuStorage::F64(self.to_vec_f64()),
            // A GPU tensor is f32 and f32 returned above: this is the error.
            (Storage::Cuda(_), dtype) => {
                return cuda_dtype("to_dtype", dtype).map(|()| self.detach())
            }
        };
        Ok(Tensor::new_unchecked(
            Arc::new(Storage::Cpu(storage)),
            self.shape().to_vec(),
            None,
        ))
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
    ///
    /// Errors if the tensor is not a scalar, or depends on no trainable
    /// parameter (all frozen, or computed under [`crate::no_grad`]).
    ///
    /// ```
    /// use engine::{ops, Param, Tensor};
    /// // loss = Σ w ⊙ x, so dloss/dw = x.
    /// let w = Param::new("w", Tensor::from_vec(vec![0.5f64, -1.0, 2.0], &[3])?);
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])?;
    /// let loss = ops::sum(&ops::mul(&w.tensor(), &x)?)?;
    /// loss.backward()?;
    /// assert_eq!(w.grad().unwrap().to_vec_f64(), [1.0, 2.0, 3.0]);
    /// loss.backward()?; // gradients add up until zero_grad()
    /// assert_eq!(w.grad().unwrap().to_vec_f64(), [2.0, 4.0, 6.0]);
    /// w.zero_grad();
    /// assert!(w.grad().is_none());
    /// assert!(ops::mul(&w.tensor(), &x)?.backward().is_err()); // not a scalar
    /// # Ok::<(), engine::Error>(())
    /// ```
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
    /// A GPU tensor is copied to the host for the check.
    pub fn check_finite(&self, op: &'static str, what: &str) -> Result<()> {
        let bad = match self.storage() {
            Storage::Cpu(CpuStorage::F32(v)) => v.iter().position(|x| !x.is_finite()),
            Storage::Cpu(CpuStorage::F64(v)) => v.iter().position(|x| !x.is_finite()),
            Storage::Cuda(s) => s.to_host()?.iter().position(|x| !x.is_finite()),
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
        return Err(mixed_devices(op, a.device(), b.device()));
    }
    Ok(())
}

/// The error of an op given operands on two devices.
pub fn mixed_devices(op: &'static str, a: Device, b: Device) -> Error {
    Error::invalid(
        op,
        format!(
            "operands are on {a} and {b}; an op runs on one device: move them with \
             .to_device(...) first (models: move the parameters once, then upload each batch)"
        ),
    )
}

/// Errors naming `op` unless `dtype` can live on a GPU (f32 only).
pub fn cuda_dtype(op: &'static str, dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 => Ok(()),
        DType::F64 => Err(Error::unsupported(
            op,
            "GPU tensors are f32; f64 (gradient checks) runs on the CPU: convert with \
             .to_dtype(DType::F32) or keep the tensor on Device::Cpu",
        )),
    }
}
