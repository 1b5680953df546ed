//! One GPU as the engine sees it: its CUDA context, the stream every op
//! launches on, and our kernel modules, compiled with NVRTC for this GPU's
//! architecture on first use and loaded into the context once.
//!
//! An op's `cuda.rs` asks [`CudaDevice::function`] for a kernel by module and
//! name (`"elementwise"`, `"relu_forward_f32"`) and launches it with a
//! [`launch_1d`] geometry or its own, as the `.cu` file's header says.

use super::{guarded, probe_device, CudaInfo, DRIVER_LIBRARY};
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A GPU ready for work: context, stream, and the kernel modules loaded so far.
#[derive(Debug)]
pub struct CudaDevice {
    info: CudaInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<String, Arc<CudaModule>>>,
}

impl CudaDevice {
    /// Opens GPU `ordinal`: probes it (never panics), then creates its primary
    /// context and a stream of its own.
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let info = probe_device(DRIVER_LIBRARY, ordinal)?;
        let (ctx, stream) = guarded("creating the CUDA context", || {
            let ctx = CudaContext::new(ordinal)?;
            let stream = ctx.new_stream()?;
            Ok::<_, cudarc::driver::DriverError>((ctx, stream))
        })?
        .map_err(|e| Error::Cuda(format!("creating a context on {info}: {e}")))?;
        Ok(Arc::new(CudaDevice {
            info,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
        }))
    }

    /// The first GPU, opened once per process and shared.
    pub fn default_device() -> Result<Arc<CudaDevice>> {
        static DEVICE: OnceLock<std::result::Result<Arc<CudaDevice>, Error>> = OnceLock::new();
        DEVICE.get_or_init(|| CudaDevice::new(0)).clone()
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
        let ptx = kernels::compile_ptx(module, &arch).map_err(Error::Cuda)?;
        let loaded =
            guarded("loading PTX", || self.ctx.load_module(Ptx::from_src(ptx)))?.map_err(|e| {
                Error::Cuda(format!(
                    "{module}.cu compiled for {arch} but the driver rejects its PTX ({e}); a \
                     driver older than NVRTC 13 cannot load CUDA 13 PTX: update the driver or \
                     run with --device cpu"
                ))
            })?;
        modules.insert(module.to_string(), loaded.clone());
        Ok(loaded)
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
