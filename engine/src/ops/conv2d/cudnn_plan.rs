//! cuDNN's side of a GPU convolution, made once per [`AlgorithmKey`] and kept
//! in the device's [`PlanCache`]: the four descriptors (input, filter,
//! output, convolution), the algorithm chosen by `algorithm.rs`'s rules
//! from cuDNN's heuristic or timed ranking, the math type it needs and its
//! workspace size. [`run`] launches a plan on three buffers.
//!
//! cudarc's safe cuDNN layer keeps its raw handles private and takes only
//! the first heuristic answer (asserting there is one), so this file calls
//! its `result`/`sys` layer: every call returns a status, nothing panics.
//!
//! **Benchmark mode** (`THAW_CUDNN_BENCHMARK=1`): cudnnFind*AlgorithmEx
//! runs every candidate on the call's own buffers (the output is written,
//! then overwritten by the real launch) with a scratch workspace of half the
//! free GPU memory, at most [`FIND_WORKSPACE_LIMIT`] bytes (halved until it
//! can be allocated, and freed afterwards); algorithms needing more are left
//! out. `THAW_CUDNN_WORKSPACE_MIB` sets the limit in MiB instead. It happens
//! once per key, so the first batch of a new shape is slow. (The limit is
//! generous because the fastest algorithms can need much: VGG16's
//! block1_conv2 at batch 64, 224 px, needs 1.5 GiB for its fastest one, and
//! runs about 3x slower under a 1 GiB limit.)
//!
//! `THAW_CUDNN_LOG=1` prints each plan as it is made (to stderr): the
//! geometry, the algorithm, its math, workspace and, in benchmark mode, its
//! measured time. It is how to see why a convolution is slow.

use super::algorithm::{base_math, choose, AlgorithmKey, Candidate, Direction, Search};
use crate::cuda::cudarc::cudnn::result::{self, CudnnError};
use crate::cuda::cudarc::cudnn::sys::{
    self, cudnnConvolutionBwdDataAlgo_t, cudnnConvolutionBwdFilterAlgo_t,
    cudnnConvolutionFwdAlgo_t, cudnnDataType_t, cudnnHandle_t, cudnnMathType_t,
};
use crate::cuda::cudarc::driver::{CudaSlice, DevicePtrMut};
use crate::cuda::CudaDevice;
use crate::error::{Error, Result};
use crate::precision::Precision;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};

/// The largest scratch workspace benchmark mode lets an algorithm use (4 GiB;
/// less when half the free memory is less), unless [`WORKSPACE_ENV`] says otherwise.
pub const FIND_WORKSPACE_LIMIT: usize = 4 << 30;

/// Environment variable: benchmark mode's workspace limit in MiB.
pub const WORKSPACE_ENV: &str = "THAW_CUDNN_WORKSPACE_MIB";

/// Environment variable: `1` prints every plan as it is made.
pub const LOG_ENV: &str = "THAW_CUDNN_LOG";

/// The plans made so far on one device (kept with its cuDNN handle).
pub type PlanCache = HashMap<AlgorithmKey, Plan>;

/// An algorithm of one of the three directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Forward(cudnnConvolutionFwdAlgo_t),
    BackwardData(cudnnConvolutionBwdDataAlgo_t),
    BackwardFilter(cudnnConvolutionBwdFilterAlgo_t),
}

/// Everything cuDNN needs to run one convolution direction on one geometry.
#[derive(Debug)]
pub struct Plan {
    descriptors: Descriptors,
    /// The chosen algorithm.
    pub algorithm: Algorithm,
    /// The math type the convolution descriptor is set to (the algorithm's).
    pub math: cudnnMathType_t,
    /// The workspace the algorithm needs, in bytes.
    pub workspace_bytes: usize,
}

/// The device addresses of a convolution's three tensors, in the
/// descriptors' layouts: input x `[n, h, w, c]`, filter `[o, kh, kw, c]`,
/// output y `[n, oh, ow, o]`. The direction reads two and writes the third:
/// forward writes y, backward-data writes x (as dx, reading dy in y),
/// backward-filter writes the filter (as its gradient).
#[derive(Debug, Clone, Copy)]
pub struct Tensors {
    pub x: u64,
    pub filter: u64,
    pub y: u64,
}

/// The plan for `key` from `plans`, made (and kept) on first use. An error
/// (no usable algorithm, a failed cuDNN call) keeps nothing.
///
/// # Safety
/// In benchmark mode making the plan runs every candidate on `tensors`, so
/// they must be live buffers of the key's shapes, as for [`run`].
pub unsafe fn plan<'a>(
    dev: &CudaDevice,
    handle: cudnnHandle_t,
    plans: &'a mut PlanCache,
    key: &AlgorithmKey,
    tensors: &Tensors,
) -> Result<&'a Plan> {
    // Not `entry().or_insert_with`: making a plan can fail.
    if !plans.contains_key(key) {
        let made = make_plan(dev, handle, key, tensors)?;
        plans.insert(*key, made);
    }
    plans
        .get(key)
        .ok_or_else(|| Error::Cuda("conv2d: a cuDNN plan vanished from its cache".into()))
}

/// Launches `plan` on `tensors` with `workspace` (at least `plan.workspace_bytes`).
///
/// # Safety
/// The three addresses must be live device buffers of the plan's shapes
/// and precision, on the handle's stream.
pub unsafe fn run(
    handle: cudnnHandle_t,
    plan: &Plan,
    tensors: &Tensors,
    workspace: Option<&mut CudaSlice<u8>>,
    stream: &crate::cuda::cudarc::driver::CudaStream,
) -> std::result::Result<(), CudnnError> {
    let d = &plan.descriptors;
    let (one, zero) = (1.0f32, 0.0f32); // scaling factors are f32 for f32, f16 and bf16 data
    let (one, zero) = (
        &one as *const f32 as *const c_void,
        &zero as *const f32 as *const c_void,
    );
    let (ws_bytes, ws) = match workspace {
        Some(w) => (w.len(), Some(w.device_ptr_mut(stream))),
        None => (0, None),
    };
    let ws_ptr = ws
        .as_ref()
        .map_or(std::ptr::null_mut(), |(p, _)| *p as *mut c_void);
    let (x, w, y) = (
        tensors.x as *mut c_void,
        tensors.filter as *mut c_void,
        tensors.y as *mut c_void,
    );
    match plan.algorithm {
        Algorithm::Forward(a) => result::convolution_forward(
            handle, one, d.x, x, d.w, w, d.conv, a, ws_ptr, ws_bytes, zero, d.y, y,
        ),
        Algorithm::BackwardData(a) => result::convolution_backward_data(
            handle, one, d.w, w, d.y, y, d.conv, a, ws_ptr, ws_bytes, zero, d.x, x,
        ),
        Algorithm::BackwardFilter(a) => result::convolution_backward_filter(
            handle, one, d.x, x, d.y, y, d.conv, a, ws_ptr, ws_bytes, zero, d.w, w,
        ),
    }
}

/// Descriptors for `key`, cuDNN's ranked candidates, the first one
/// `choose` allows, the descriptor's math type set to the one it needs, and
/// its workspace size.
///
/// # Safety
/// As [`plan`].
unsafe fn make_plan(
    dev: &CudaDevice,
    handle: cudnnHandle_t,
    key: &AlgorithmKey,
    tensors: &Tensors,
) -> Result<Plan> {
    let cudnn = |what: &'static str| {
        move |e: CudnnError| Error::Cuda(format!("conv2d: cuDNN {what}: {e:?} (for {key:?})"))
    };
    let descriptors = Descriptors::new(key).map_err(cudnn("creating the descriptors"))?;
    let d = &descriptors;
    // Benchmark mode: a scratch workspace, held (with its stream-order guard) until ranked.
    let mut scratch = match key.policy.search {
        Search::Heuristic => None,
        Search::Benchmark => find_scratch(dev)?,
    };
    let scratch = scratch
        .as_mut()
        .map(|b| (b.len(), b.device_ptr_mut(dev.stream())));
    let ranking = match (key.policy.search, &scratch) {
        (Search::Heuristic, _) => Ranking::Heuristic,
        (Search::Benchmark, Some((bytes, (ptr, _)))) => Ranking::Benchmark {
            workspace: *ptr as *mut c_void,
            bytes: *bytes,
        },
        (Search::Benchmark, None) => Ranking::Benchmark {
            workspace: std::ptr::null_mut(),
            bytes: 0,
        },
    };
    let failed = cudnn("ranking the algorithms");
    // SAFETY (the three calls): live handle and descriptors; in benchmark
    // mode the tensors are live buffers of the key's shapes (the caller's contract).
    let (algorithm, math, time_ms) = match key.direction {
        Direction::Forward => {
            let list = unsafe { rank_forward(handle, d, tensors, ranking) }.map_err(failed)?;
            let c = choose(&list, key)?;
            (Algorithm::Forward(c.algo), c.math, c.time_ms)
        }
        Direction::BackwardData => {
            let list =
                unsafe { rank_backward_data(handle, d, tensors, ranking) }.map_err(failed)?;
            let c = choose(&list, key)?;
            (Algorithm::BackwardData(c.algo), c.math, c.time_ms)
        }
        Direction::BackwardFilter => {
            let list =
                unsafe { rank_backward_filter(handle, d, tensors, ranking) }.map_err(failed)?;
            let c = choose(&list, key)?;
            (Algorithm::BackwardFilter(c.algo), c.math, c.time_ms)
        }
    };
    let scratch_bytes = scratch.as_ref().map_or(0, |(bytes, _)| *bytes);
    drop(scratch);
    if math != base_math(key.precision, key.allow_tf32) {
        // SAFETY: a live descriptor.
        unsafe { result::set_convolution_math_type(d.conv, math) }
            .map_err(cudnn("setting the algorithm's math type"))?;
    }
    // SAFETY: live handle and descriptors.
    let workspace_bytes = unsafe { workspace_size(handle, d, algorithm) }
        .map_err(cudnn("querying the workspace size"))?;
    if std::env::var(LOG_ENV).is_ok_and(|v| v == "1") {
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        let how = match key.policy.search {
            Search::Heuristic => "heuristic".to_string(),
            Search::Benchmark => {
                format!(
                    "timed {time_ms:.3} ms, scratch {:.0} MiB",
                    mib(scratch_bytes)
                )
            }
        };
        eprintln!(
            "cudnn plan: {:?} x{:?} w{:?} stride {:?} pad {:?} {:?}: {algorithm:?}, {math:?}, \
             workspace {:.1} MiB ({how})",
            key.direction,
            key.input,
            key.filter,
            key.stride,
            key.padding,
            key.precision,
            mib(workspace_bytes)
        );
    }
    Ok(Plan {
        descriptors,
        algorithm,
        math,
        workspace_bytes,
    })
}

/// A scratch workspace for cudnnFind: [`WORKSPACE_ENV`] MiB if set, else
/// half the free memory up to [`FIND_WORKSPACE_LIMIT`]; half as much until
/// it can be allocated (None below 1 MiB: then only algorithms needing no
/// workspace are timed).
fn find_scratch(dev: &CudaDevice) -> Result<Option<CudaSlice<u8>>> {
    let bad_value = |v: &str| {
        let msg = format!(
            "{WORKSPACE_ENV}={v:?} is not a whole number of MiB; unset it for the default (half \
             the free GPU memory, at most {} MiB)",
            FIND_WORKSPACE_LIMIT >> 20
        );
        Error::invalid("conv2d", msg)
    };
    let mut bytes = match std::env::var(WORKSPACE_ENV) {
        Ok(v) => v.trim().parse::<usize>().map_err(|_| bad_value(&v))? << 20,
        Err(_) => {
            let free = dev.free_memory().unwrap_or(FIND_WORKSPACE_LIMIT);
            (free / 2).min(FIND_WORKSPACE_LIMIT)
        }
    };
    while bytes >= 1 << 20 {
        // SAFETY: cudnnFind writes its workspace before reading it.
        if let Ok(buffer) = unsafe { dev.stream().alloc::<u8>(bytes) } {
            return Ok(Some(buffer));
        }
        bytes /= 2;
    }
    Ok(None)
}

/// How cuDNN ranks the candidates.
#[derive(Clone, Copy)]
enum Ranking {
    /// By its heuristic (cudnnGet*_v7).
    Heuristic,
    /// By timing each on the tensors (cudnnFind*Ex), with this scratch workspace.
    Benchmark {
        workspace: *mut c_void,
        bytes: usize,
    },
}

/// cuDNN's ranked perf results (`returned` of them filled) as candidates.
fn ranked<P: Copy, A>(perf: &[P], returned: c_int) -> Vec<Candidate<A>>
where
    Candidate<A>: From<P>,
{
    let n = (returned.max(0) as usize).min(perf.len());
    perf[..n].iter().map(|&p| Candidate::from(p)).collect()
}

/// # Safety
/// As [`make_plan`]'s calls say.
unsafe fn rank_forward(
    handle: cudnnHandle_t,
    d: &Descriptors,
    t: &Tensors,
    ranking: Ranking,
) -> std::result::Result<Vec<Candidate<cudnnConvolutionFwdAlgo_t>>, CudnnError> {
    const N: usize = cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as usize;
    // SAFETY: all-zero is a valid perf struct (every enum in it has a 0 variant).
    let mut perf = [unsafe { std::mem::zeroed() }; N];
    let mut returned: c_int = 0;
    // SAFETY: live handle and descriptors; `perf` holds N entries; in
    // benchmark mode the tensors are live buffers of the descriptors' shapes.
    unsafe {
        match ranking {
            Ranking::Heuristic => result::get_convolution_forward_algorithm(
                handle,
                d.x,
                d.w,
                d.conv,
                d.y,
                N as c_int,
                &mut returned,
                perf.as_mut_ptr(),
            )?,
            Ranking::Benchmark { workspace, bytes } => sys::cudnnFindConvolutionForwardAlgorithmEx(
                handle,
                d.x,
                t.x as *const c_void,
                d.w,
                t.filter as *const c_void,
                d.conv,
                d.y,
                t.y as *mut c_void,
                N as c_int,
                &mut returned,
                perf.as_mut_ptr(),
                workspace,
                bytes,
            )
            .result()?,
        }
    }
    Ok(ranked(&perf, returned))
}

/// # Safety
/// As [`make_plan`]'s calls say.
unsafe fn rank_backward_data(
    handle: cudnnHandle_t,
    d: &Descriptors,
    t: &Tensors,
    ranking: Ranking,
) -> std::result::Result<Vec<Candidate<cudnnConvolutionBwdDataAlgo_t>>, CudnnError> {
    const N: usize = cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT as usize;
    // SAFETY: as in rank_forward.
    let mut perf = [unsafe { std::mem::zeroed() }; N];
    let mut returned: c_int = 0;
    // SAFETY: as in rank_forward.
    unsafe {
        match ranking {
            Ranking::Heuristic => result::get_convolution_backward_data_algorithm(
                handle,
                d.w,
                d.y,
                d.conv,
                d.x,
                N as c_int,
                &mut returned,
                perf.as_mut_ptr(),
            )?,
            Ranking::Benchmark { workspace, bytes } => {
                sys::cudnnFindConvolutionBackwardDataAlgorithmEx(
                    handle,
                    d.w,
                    t.filter as *const c_void,
                    d.y,
                    t.y as *const c_void,
                    d.conv,
                    d.x,
                    t.x as *mut c_void,
                    N as c_int,
                    &mut returned,
                    perf.as_mut_ptr(),
                    workspace,
                    bytes,
                )
                .result()?
            }
        }
    }
    Ok(ranked(&perf, returned))
}

/// # Safety
/// As [`make_plan`]'s calls say.
unsafe fn rank_backward_filter(
    handle: cudnnHandle_t,
    d: &Descriptors,
    t: &Tensors,
    ranking: Ranking,
) -> std::result::Result<Vec<Candidate<cudnnConvolutionBwdFilterAlgo_t>>, CudnnError> {
    const N: usize =
        cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT as usize;
    // SAFETY: as in rank_forward.
    let mut perf = [unsafe { std::mem::zeroed() }; N];
    let mut returned: c_int = 0;
    // SAFETY: as in rank_forward.
    unsafe {
        match ranking {
            Ranking::Heuristic => result::get_convolution_backward_filter_algorithm(
                handle,
                d.x,
                d.y,
                d.conv,
                d.w,
                N as c_int,
                &mut returned,
                perf.as_mut_ptr(),
            )?,
            Ranking::Benchmark { workspace, bytes } => {
                sys::cudnnFindConvolutionBackwardFilterAlgorithmEx(
                    handle,
                    d.x,
                    t.x as *const c_void,
                    d.y,
                    t.y as *const c_void,
                    d.conv,
                    d.w,
                    t.filter as *mut c_void,
                    N as c_int,
                    &mut returned,
                    perf.as_mut_ptr(),
                    workspace,
                    bytes,
                )
                .result()?
            }
        }
    }
    Ok(ranked(&perf, returned))
}

/// The workspace `algorithm` needs with the descriptors as they are now
/// (math type included).
///
/// # Safety
/// Live handle and descriptors.
unsafe fn workspace_size(
    handle: cudnnHandle_t,
    d: &Descriptors,
    algorithm: Algorithm,
) -> std::result::Result<usize, CudnnError> {
    match algorithm {
        Algorithm::Forward(a) => {
            result::get_convolution_forward_workspace_size(handle, d.x, d.w, d.conv, d.y, a)
        }
        Algorithm::BackwardData(a) => {
            result::get_convolution_backward_data_workspace_size(handle, d.w, d.y, d.conv, d.x, a)
        }
        Algorithm::BackwardFilter(a) => {
            result::get_convolution_backward_filter_workspace_size(handle, d.x, d.y, d.conv, d.w, a)
        }
    }
}

/// The four raw cuDNN descriptors of one convolution, destroyed on drop.
/// NHWC tensors; dims are given to cuDNN as (n, c, h, w) and the filter's as
/// (o, c, kh, kw), the NHWC format saying the memory is NHWC / OHWI.
#[derive(Debug)]
struct Descriptors {
    x: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
}

impl Descriptors {
    fn new(key: &AlgorithmKey) -> std::result::Result<Descriptors, CudnnError> {
        let i = |v: usize| v as c_int;
        let [n, h, w, c] = key.input.map(i);
        let [o, kh, kw, _] = key.filter.map(i);
        let [sh, sw] = key.stride.map(i);
        let [ph, pw] = key.padding.map(i);
        // The output size cuDNN computes (cuda.rs's `padded` checks it is ours).
        let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
        let data = data_type(key.precision);
        let nhwc = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
        // Null until created: Drop destroys only what exists.
        let mut d = Descriptors {
            x: std::ptr::null_mut(),
            w: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            conv: std::ptr::null_mut(),
        };
        // SAFETY: each descriptor is set right after it is created, and only once.
        unsafe {
            d.x = result::create_tensor_descriptor()?;
            result::set_tensor4d_descriptor(d.x, nhwc, data, [n, c, h, w])?;
            d.w = result::create_filter_descriptor()?;
            result::set_filter4d_descriptor(d.w, data, nhwc, [o, c, kh, kw])?;
            d.y = result::create_tensor_descriptor()?;
            result::set_tensor4d_descriptor(d.y, nhwc, data, [n, o, oh, ow])?;
            d.conv = result::create_convolution_descriptor()?;
            // Compute type f32: products are accumulated in f32 whatever the data type.
            result::set_convolution2d_descriptor(
                d.conv,
                ph,
                pw,
                sh,
                sw,
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                cudnnDataType_t::CUDNN_DATA_FLOAT,
            )?;
            result::set_convolution_math_type(d.conv, base_math(key.precision, key.allow_tf32))?;
        }
        Ok(d)
    }
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each non-null descriptor was created by `new` and is destroyed
        // once; a failure to destroy one can only leak it, so it is ignored.
        unsafe {
            if !self.x.is_null() {
                let _ = result::destroy_tensor_descriptor(self.x);
            }
            if !self.w.is_null() {
                let _ = result::destroy_filter_descriptor(self.w);
            }
            if !self.y.is_null() {
                let _ = result::destroy_tensor_descriptor(self.y);
            }
            if !self.conv.is_null() {
                let _ = result::destroy_convolution_descriptor(self.conv);
            }
        }
    }
}

/// cuDNN's name for the operand format.
fn data_type(precision: Precision) -> cudnnDataType_t {
    match precision {
        Precision::F32 => cudnnDataType_t::CUDNN_DATA_FLOAT,
        Precision::F16 => cudnnDataType_t::CUDNN_DATA_HALF,
        Precision::Bf16 => cudnnDataType_t::CUDNN_DATA_BFLOAT16,
    }
}
