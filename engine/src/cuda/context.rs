//! One GPU as the engine sees it: its CUDA context, the stream every op
//! launches on, and our kernel modules, compiled with NVRTC for this GPU's
//! architecture on first use and loaded into the context once.
//!
//! An op's `cuda.rs` asks [`CudaDevice::function`] for a kernel by module and
//! name (`"elementwise"`, `"relu_forward_f32"`) and launches it with a
//! [`launch_1d`] geometry or its own, as the `.cu` file's header says.
//!
//! The device also owns, created on first use: the cuBLAS handle
//! ([`CudaDevice::blas`]) and the cuDNN handle with one workspace buffer that
//! every convolution reuses, grown when a convolution needs more, and the
//! convolutions' cuDNN plans (descriptors and chosen algorithm, one per
//! geometry; `ops/conv2d/algorithm.rs`) ([`CudaDevice::with_cudnn`]).
//!
//! **Full f32 math by default.** On Ampere and newer GPUs cuDNN may run f32
//! convolutions on tensor cores in TF32 (10-bit mantissa) unless told not
//! to; thaw asks cuBLAS for its default math (no TF32 for f32 GEMMs) and
//! cuDNN for FMA math (no tensor cores), so GPU results stay within ~1e-5 of
//! the CPU and Keras. Set `THAW_ALLOW_TF32=1` to allow TF32 in both (faster,
//! about 1e-3 relative error).
//!
//! All of thaw's work on a GPU is queued on one stream, in order, so cudarc's
//! per-buffer event tracking (for several streams) is turned off.

use super::{guarded, probe_device, CudaInfo, DRIVER_LIBRARY};
use crate::error::{Error, Result};
use crate::ops::conv2d::{AlgorithmPolicy, PlanCache};
use cudarc::cublas::CudaBlas;
use cudarc::cudnn::{result as cudnn_result, sys as cudnn_sys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Environment variable that allows TF32 tensor-core math in cuBLAS and cuDNN when `1`.
pub const ALLOW_TF32_ENV: &str = "THAW_ALLOW_TF32";

/// A GPU ready for work: context, stream, and the kernel modules loaded so far.
#[derive(Debug)]
pub struct CudaDevice {
    info: CudaInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<String, Arc<CudaModule>>>,
    allow_tf32: bool,
    blas: OnceLock<std::result::Result<CudaBlas, Error>>,
    cudnn: Mutex<Option<CudnnState>>,
    conv_policy: Mutex<AlgorithmPolicy>,
}

/// The cuDNN handle, the convolution workspace and the convolutions' plans,
/// used under the device's lock.
#[derive(Debug)]
pub struct CudnnState {
    /// The handle, bound to the device's stream.
    pub handle: CudnnHandle,
    /// Scratch memory for the convolution algorithms, grown on demand, never shrunk.
    pub workspace: Workspace,
    /// One plan per convolution geometry and direction, made on first use.
    pub conv_plans: PlanCache,
}

// SAFETY: cuDNN allows a handle (and descriptors) to be used from any thread
// as long as no two threads use it at once; CudnnState is only reached
// through the device's Mutex.
unsafe impl Send for CudnnState {}

/// A raw cuDNN handle on the device's stream, destroyed on drop. (cudarc's
/// `Cudnn` keeps its raw handle private; the algorithm search in
/// `ops/conv2d/cudnn_plan.rs` calls cuDNN directly and needs it.)
#[derive(Debug)]
pub struct CudnnHandle(cudnn_sys::cudnnHandle_t);

impl CudnnHandle {
    fn new(stream: &CudaStream) -> std::result::Result<CudnnHandle, cudnn_result::CudnnError> {
        let handle = CudnnHandle(cudnn_result::create_handle()?);
        // SAFETY: a live handle and this context's stream.
        unsafe { cudnn_result::set_stream(handle.0, stream.cu_stream() as _) }?;
        Ok(handle)
    }

    /// The raw handle, for cuDNN calls.
    pub fn raw(&self) -> cudnn_sys::cudnnHandle_t {
        self.0
    }
}

impl Drop for CudnnHandle {
    fn drop(&mut self) {
        // SAFETY: created by `new`, destroyed once; a failure can only leak it.
        let _ = unsafe { cudnn_result::destroy_handle(self.0) };
    }
}

/// The convolutions' shared workspace.
#[derive(Debug, Default)]
pub struct Workspace(Option<CudaSlice<u8>>);

impl Workspace {
    /// The workspace, at least `bytes` long (None when no workspace is needed).
    pub fn at_least(
        &mut self,
        stream: &Arc<CudaStream>,
        bytes: usize,
    ) -> Result<Option<&mut CudaSlice<u8>>> {
        if bytes == 0 {
            return Ok(None);
        }
        if self.0.as_ref().is_none_or(|w| w.len() < bytes) {
            self.0 = None; // free the old one first
            let w = stream.alloc_zeros::<u8>(bytes).map_err(|e| {
                Error::Cuda(format!(
                    "allocating a {bytes}-byte cuDNN workspace: {e}; use a smaller --batch-size"
                ))
            })?;
            self.0 = Some(w);
        }
        Ok(self.0.as_mut())
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal`: probes it (never panics), then creates its primary
    /// context and a stream of its own. The convolution algorithm policy
    /// comes from `THAW_CUDNN_BENCHMARK` / `THAW_CUDNN_DETERMINISTIC` (an
    /// error if either is set to something other than 0 or 1).
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let conv_policy = AlgorithmPolicy::from_env()?;
        let info = probe_device(DRIVER_LIBRARY, ordinal)?;
        let (ctx, stream) = guarded("creating the CUDA context", || {
            let ctx = CudaContext::new(ordinal)?;
            // SAFETY: every buffer of this context is used on the one stream below,
            // so the stream's order is all the synchronisation needed.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream()?;
            keep_freed_memory_pooled(&ctx);
            Ok::<_, cudarc::driver::DriverError>((ctx, stream))
        })?
        .map_err(|e| Error::Cuda(format!("creating a context on {info}: {e}")))?;
        Ok(Arc::new(CudaDevice {
            info,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            allow_tf32: std::env::var(ALLOW_TF32_ENV).is_ok_and(|v| v == "1"),
            blas: OnceLock::new(),
            cudnn: Mutex::new(None),
            conv_policy: Mutex::new(conv_policy),
        }))
    }

    /// The first GPU, opened once per process and shared.
    pub fn default_device() -> Result<Arc<CudaDevice>> {
        CudaDevice::open(0)
    }

    /// GPU `ordinal`, opened on first use and shared for the rest of the
    /// process (every tensor on `Device::Cuda(ordinal)` uses this one).
    pub fn open(ordinal: usize) -> Result<Arc<CudaDevice>> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let mut devices = DEVICES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(d) = devices.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = CudaDevice::new(ordinal)?;
        devices.insert(ordinal, d.clone());
        Ok(d)
    }

    /// Whether TF32 tensor-core math is allowed (`THAW_ALLOW_TF32=1`; default: no).
    pub fn allow_tf32(&self) -> bool {
        self.allow_tf32
    }

    /// How this device chooses convolution algorithms.
    pub fn conv_algorithm_policy(&self) -> AlgorithmPolicy {
        *self.conv_policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes how this device chooses convolution algorithms from now on
    /// (instead of the environment's policy); choices already made under
    /// another policy stay cached under it.
    pub fn set_conv_algorithm_policy(&self, policy: AlgorithmPolicy) {
        *self.conv_policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// An error-mapping closure for a failed CUDA call `what` on this device.
    pub fn error<E: std::fmt::Debug>(&self, what: &str) -> impl FnOnce(E) -> Error {
        let msg = format!("{what} on cuda:{}", self.info.ordinal);
        move |e| Error::Cuda(format!("{msg}: {e:?}"))
    }

    /// A buffer of `n` zeros (`T` = f32, or i32 for argmax indices).
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros::<T>(n).map_err(|e| {
            Error::Cuda(format!(
                "allocating {n} x {} bytes on cuda:{}: {e}; out of GPU memory? use a smaller \
                 --batch-size",
                std::mem::size_of::<T>(),
                self.info.ordinal
            ))
        })
    }

    /// A new device buffer holding `values`.
    pub fn upload<T: DeviceRepr>(&self, values: &[T]) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(values)
            .map_err(self.error("copying to the GPU"))
    }

    /// The values of a device buffer, on the host (waits for the queued work).
    pub fn download<T: DeviceRepr>(&self, values: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(values)
            .map_err(self.error("copying from the GPU"))
    }

    /// `n` copies of `value` (zeros by memset, anything else by `fill_f32`).
    pub fn filled(&self, n: usize, value: f32) -> Result<CudaSlice<f32>> {
        let mut y = self.alloc::<f32>(n)?;
        if value != 0.0 && n > 0 {
            let f = self.function("elementwise", "fill_f32")?;
            let n64 = n as u64;
            let mut args = self.stream.launch_builder(&f);
            args.arg(&mut y).arg(&value).arg(&n64);
            // SAFETY: fill_f32(float* y, float value, u64 n) writes n floats; y holds n.
            unsafe { args.launch(launch_1d(n)) }.map_err(self.error("fill_f32"))?;
        }
        Ok(y)
    }

    /// The cuBLAS handle (created on first use, on this device's stream, with
    /// TF32 off unless [`ALLOW_TF32_ENV`] says otherwise).
    pub fn blas(&self) -> Result<&CudaBlas> {
        self.ctx
            .bind_to_thread()
            .map_err(self.error("binding the context"))?;
        self.blas
            .get_or_init(|| {
                if !self.info.cublas {
                    return Err(Error::Cuda(
                        "cuBLAS (libcublas.so.13) not found: matmul on the GPU needs it; \
                         install CUDA 13's cuBLAS or run with --device cpu"
                            .into(),
                    ));
                }
                let blas = guarded("creating the cuBLAS handle", || {
                    CudaBlas::new(self.stream.clone())
                })?
                .map_err(self.error("creating the cuBLAS handle"))?;
                use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode};
                let mode = if self.allow_tf32 {
                    cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
                } else {
                    cublasMath_t::CUBLAS_DEFAULT_MATH // f32 GEMMs in f32
                };
                // SAFETY: a valid handle, created just above.
                unsafe { cublasSetMathMode(*blas.handle(), mode) }
                    .result()
                    .map_err(self.error("setting the cuBLAS math mode"))?;
                Ok(blas)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Runs `f` with the cuDNN handle, the shared workspace and the
    /// convolution plans (created on first use, on this device's stream),
    /// one caller at a time.
    pub fn with_cudnn<R>(&self, f: impl FnOnce(&mut CudnnState) -> Result<R>) -> Result<R> {
        self.ctx
            .bind_to_thread()
            .map_err(self.error("binding the context"))?;
        let mut state = self.cudnn.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            if !self.info.cudnn {
                return Err(Error::Cuda(
                    "cuDNN (libcudnn.so.9) not found: conv2d on the GPU needs it; install cuDNN 9 \
                     for CUDA 13 (pip install nvidia-cudnn-cu13) or run with --device cpu"
                        .into(),
                ));
            }
            let handle = guarded("creating the cuDNN handle", || {
                CudnnHandle::new(&self.stream)
            })?
            .map_err(self.error("creating the cuDNN handle"))?;
            *state = Some(CudnnState {
                handle,
                workspace: Workspace::default(),
                conv_plans: PlanCache::new(),
            });
        }
        let state = state.as_mut().expect("created above");
        guarded("calling cuDNN", || f(state))?
    }

    /// Waits until everything queued on this device's stream has finished.
    /// Ops return as soon as their work is queued, so a timer around GPU work
    /// must call this before it stops (and so must anything that reads the
    /// wall clock as "done"); copies to the host wait on their own.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(self.error("waiting for the stream to finish"))
    }

    /// The device memory free right now, in bytes (cuMemGetInfo: memory
    /// this process's pool holds counts as used).
    pub fn free_memory(&self) -> Result<usize> {
        self.ctx
            .bind_to_thread()
            .and_then(|()| cudarc::driver::result::mem_get_info())
            .map(|(free, _total)| free)
            .map_err(self.error("asking for the free memory"))
    }

    /// What the probe found about this GPU.
    pub fn info(&self) -> &CudaInfo {
        &self.info
    }

    /// The CUDA context (for cuBLAS/cuDNN handles and allocations).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream all of thaw's work on this GPU is queued on, in order.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Kernel `function` of module `module` (a `kernels/src/<module>.cu`),
    /// compiling and loading the module on first use. Errors name the module
    /// and say whether NVRTC, the compile, or the driver's PTX load failed.
    pub fn function(&self, module: &str, function: &str) -> Result<CudaFunction> {
        let (_, functions) = kernels::module(module).ok_or_else(|| {
            Error::Cuda(format!(
                "no kernel module {module:?} in kernels/src (see kernels::KERNELS)"
            ))
        })?;
        if !functions.contains(&function) {
            return Err(Error::Cuda(format!(
                "kernel module {module} has no function {function:?}; it has {functions:?}"
            )));
        }
        let loaded = self.module(module)?;
        guarded("loading a kernel", || loaded.load_function(function))?
            .map_err(|e| Error::Cuda(format!("{module}.cu: loading {function}: {e}")))
    }

    fn module(&self, module: &str) -> Result<Arc<CudaModule>> {
        let mut modules = self
            .modules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(m) = modules.get(module) {
            return Ok(m.clone());
        }
        let arch = self.info.arch();
        // Machine code for this GPU first: it loads on any CUDA 13 driver,
        // while PTX from a newer NVRTC than the driver is rejected (see
        // kernels::compile_cubin). PTX (JIT-compiled by the driver) is the fallback.
        let cubin_error = match kernels::compile_cubin(module, &arch) {
            Ok(cubin) => {
                match guarded("loading a CUBIN", || {
                    self.ctx.load_module(Ptx::from_binary(cubin))
                })? {
                    Ok(loaded) => {
                        modules.insert(module.to_string(), loaded.clone());
                        return Ok(loaded);
                    }
                    Err(e) => format!("the driver rejects its CUBIN ({e})"),
                }
            }
            Err(e) => e,
        };
        let ptx = kernels::compile_ptx(module, &arch).map_err(Error::Cuda)?;
        let loaded =
            guarded("loading PTX", || self.ctx.load_module(Ptx::from_src(ptx)))?.map_err(|e| {
                Error::Cuda(format!(
                    "{module}.cu compiled for {arch} but the driver rejects its PTX ({e}) and \
                     {cubin_error}; a driver older than the NVRTC in use cannot load its PTX: \
                     update the driver, use the NVRTC of the driver's CUDA version \
                     (THAW_NVRTC_LIB), or run with --device cpu"
                ))
            })?;
        modules.insert(module.to_string(), loaded.clone());
        Ok(loaded)
    }
}

/// Buffers are allocated from the device's default memory pool
/// (`cuMemAllocAsync`). Its release threshold is 0 by default: at every
/// synchronisation (each copy of a batch's features to the host) the pool
/// hands all freed memory back to the driver, and the next batch maps it
/// again. Keeping it pooled (threshold u64::MAX) makes later allocations of
/// the same sizes cheap; the memory stays this process's until it exits.
/// Best effort: a driver that refuses only costs speed.
fn keep_freed_memory_pooled(ctx: &CudaContext) {
    use cudarc::driver::sys;
    let mut pool = std::ptr::null_mut();
    // SAFETY: a valid device handle and out-pointer; the context is current
    // (new_stream just bound it).
    if unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }
        .result()
        .is_ok()
    {
        let mut threshold = u64::MAX;
        // SAFETY: the attribute takes a u64 (cuuint64_t) by pointer.
        let _ = unsafe {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            )
        };
    }
}

/// Launch geometry for the 1-D grid-stride kernels: 256 threads per block and
/// enough blocks to cover `n` elements, capped at 65,535 blocks (the kernels
/// loop over whatever the grid does not cover).
pub fn launch_1d(n: usize) -> LaunchConfig {
    const THREADS: usize = 256;
    let blocks = n.div_ceil(THREADS).clamp(1, 65_535);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}
