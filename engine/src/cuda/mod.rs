//! The CUDA side of the engine, on its own for now: finding a GPU without
//! ever panicking ([`probe`], [`is_available`]), a context with its stream,
//! and our NVRTC kernels from the `kernels` crate compiled, loaded and cached
//! per device ([`CudaDevice::function`]).
//!
//! Nothing here needs CUDA to build: cudarc loads `libcuda.so.1`, NVRTC,
//! cuBLAS and cuDNN at run time. cudarc panics when a library it needs is
//! missing, so every entry point checks first (a `dlopen` of its own, then
//! cudarc's non-panicking `is_culib_present`) and wraps driver calls in
//! `catch_unwind`: on a machine without a GPU the answer is an
//! [`Error::Cuda`] that says what is missing and to run with `--device cpu`.
//!
//! # How this slots into tensors
//!
//! - [`crate::Device::Cuda`]`(ordinal)` next to `Device::Cpu`, and
//!   [`crate::Storage::Cuda`]`(`[`CudaStorage`]`)` next to `Storage::Cpu`: a
//!   `CudaSlice<f32>` plus the `Arc<CudaDevice>` it lives on. GPU tensors are f32.
//! - [`crate::Tensor::to_device`] copies between host and GPU; everything
//!   else stays on the GPU between layers (no host round trip).
//! - Each op folder has a `cuda.rs` next to its `cpu.rs`; the op's `mod.rs`
//!   matches `Storage::Cuda` in its forward and in its backward closure, and
//!   `cuda.rs` launches the kernel from `kernels/src/<op>.cu` through
//!   [`CudaDevice::function`], or calls cuBLAS (matmul) or cuDNN (conv2d).
//! - `--device cuda|cpu|auto` in the trainer: `auto` uses [`probe`] and says
//!   in one line which device it picked.
//!
//! The GPU tests (parity against the CPU and against Keras) run on a
//! machine with a GPU but no Rust toolchain through
//! `tests/gpu/run_on_device.sh` (see `tests/gpu/README.md`); the last run's
//! figures are in `docs/cuda.md`, "Measured".

mod context;
mod storage;

pub use context::{launch_1d, CudaDevice, CudnnHandle, CudnnState, Workspace, ALLOW_TF32_ENV};
/// The CUDA bindings, re-exported so ops and tests launch kernels with the same version.
pub use cudarc;
pub use storage::{CudaStorage, DerivedKey, DeviceBuffer, OnceMap};

use crate::error::{Error, Result};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// The CUDA driver library every probe looks for first.
pub const DRIVER_LIBRARY: &str = "libcuda.so.1";

/// What [`probe`] found: one GPU and the libraries around it.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaInfo {
    /// Device ordinal (0 for the first GPU).
    pub ordinal: usize,
    /// Number of CUDA devices the driver sees.
    pub device_count: usize,
    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability (major, minor), e.g. (9, 0).
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub total_memory: usize,
    /// Driver API version as CUDA encodes it (13000 = 13.0).
    pub driver_version: i32,
    /// Whether cuBLAS could be loaded (dense/matmul needs it).
    pub cublas: bool,
    /// Whether cuDNN could be loaded (conv2d needs it).
    pub cudnn: bool,
}

impl CudaInfo {
    /// The NVRTC architecture of this device, e.g. "sm_90".
    pub fn arch(&self) -> String {
        let (major, minor) = self.compute_capability;
        format!("sm_{major}{minor}")
    }
}

impl fmt::Display for CudaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let found = |ok: bool| if ok { "found" } else { "missing" };
        write!(
            f,
            "cuda:{} {} (compute capability {}.{}, {:.1} GiB, driver {}.{}, {} device(s); cuBLAS {}, cuDNN {})",
            self.ordinal,
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.total_memory as f64 / (1u64 << 30) as f64,
            self.driver_version / 1000,
            self.driver_version % 1000 / 10,
            self.device_count,
            found(self.cublas),
            found(self.cudnn),
        )
    }
}

/// Looks for the first GPU (ordinal 0). Never panics: without a driver, a
/// device, or a usable library the answer is an [`Error::Cuda`] saying what
/// was missing, e.g. `no CUDA driver found (libcuda.so.1): ...; run with --device cpu`.
pub fn probe() -> Result<CudaInfo> {
    probe_device(DRIVER_LIBRARY, 0)
}

/// Whether a usable GPU is present (the result of the first [`probe`], cached).
pub fn is_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| probe().is_ok())
}

/// Waits until all work queued on `device` has finished: nothing to wait
/// for on the CPU, [`CudaDevice::synchronize`] on a GPU. Benchmarks call it
/// before stopping each timer.
pub fn synchronize(device: crate::Device) -> Result<()> {
    match device {
        crate::Device::Cpu => Ok(()),
        crate::Device::Cuda(ordinal) => CudaDevice::open(ordinal)?.synchronize(),
    }
}

/// [`probe`] for device `ordinal`, with the driver library given by name
/// (tests pass a name that cannot exist to check the no-driver path on any
/// machine).
pub fn probe_device(driver_library: &str, ordinal: usize) -> Result<CudaInfo> {
    check_library(driver_library).map_err(|e| {
        Error::Cuda(format!(
            "no CUDA driver found ({driver_library}): {e}; install the NVIDIA driver or run with --device cpu"
        ))
    })?;
    // SAFETY: only tries to dlopen cudarc's candidate names; loads no symbol.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::Cuda(format!(
            "{driver_library} loads but cudarc finds no CUDA driver library under its names \
             (libcuda.so, libcuda.so.1); run with --device cpu"
        )));
    }
    guarded("probing the GPU", || query_device(ordinal))?
}

/// Opens a shared library by name just to see whether it loads, and closes it.
fn check_library(name: &str) -> std::result::Result<(), String> {
    // SAFETY: loading the CUDA driver runs only its own initialisers.
    unsafe { libloading::Library::new(name) }
        .map(drop)
        .map_err(|e| with_sources(&e))
}

/// An error and its chain of causes, on one line (libloading's own message
/// is just "dlopen failed"; the loader's reason is in the source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// Runs `f`, turning a panic inside cudarc (a missing symbol, an unexpected
/// library version) into an [`Error::Cuda`] about `what`.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Error::Cuda(format!(
            "{what}: the CUDA libraries failed ({msg}); check that the driver supports CUDA 13, \
             or run with --device cpu"
        ))
    })
}

/// The driver queries behind [`probe`]; the library is known to be present.
fn query_device(ordinal: usize) -> Result<CudaInfo> {
    use cudarc::driver::result;
    let cuda = |what: &str, e: result::DriverError| Error::Cuda(format!("{what}: {e}"));
    result::init().map_err(|e| {
        cuda(
            "the CUDA driver is installed but does not start (cuInit); is a GPU visible to this \
             process? run with --device cpu",
            e,
        )
    })?;
    let count = result::device::get_count().map_err(|e| cuda("counting CUDA devices", e))?;
    if count <= 0 {
        return Err(Error::Cuda(
            "the CUDA driver sees no GPU; run with --device cpu".to_string(),
        ));
    }
    if ordinal >= count as usize {
        return Err(Error::Cuda(format!(
            "no CUDA device {ordinal}: the driver sees {count} (ordinals 0..{count})"
        )));
    }
    let dev = result::device::get(ordinal as i32)
        .map_err(|e| cuda(&format!("opening CUDA device {ordinal}"), e))?;
    let name = result::device::get_name(dev).map_err(|e| cuda("reading the device name", e))?;
    let attribute = |a| {
        // SAFETY: dev is a valid device handle from cuDeviceGet.
        unsafe { result::device::get_attribute(dev, a) }
            .map_err(|e| cuda("reading the compute capability", e))
    };
    use cudarc::driver::sys::CUdevice_attribute as A;
    let major = attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    // SAFETY: dev is a valid device handle from cuDeviceGet.
    let total_memory = unsafe { result::device::total_mem(dev) }
        .map_err(|e| cuda("reading the device memory size", e))?;
    let mut driver_version = 0;
    // SAFETY: a valid out-pointer.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(|e| cuda("reading the driver version", e))?;
    Ok(CudaInfo {
        ordinal,
        device_count: count as usize,
        name,
        compute_capability: (major, minor),
        total_memory,
        driver_version,
        // SAFETY: only tries to dlopen the candidate names.
        cublas: unsafe { cudarc::cublas::sys::is_culib_present() },
        // SAFETY: as above.
        cudnn: unsafe { cudarc::cudnn::sys::is_culib_present() },
    })
}
