//! thaw's own CUDA kernels: the `.cu` sources, one file per op family, and
//! their compilation with NVRTC at run time, to machine code (CUBIN) for the
//! GPU's architecture and to PTX.
//!
//! Where this sits: an op's `cuda.rs` (in `engine/src/ops/<op>/`) asks
//! `engine::cuda` for a kernel; the engine gets the CUBIN from
//! [`compile_cubin`] (or, if the driver refuses that, the PTX from
//! [`compile_ptx`]), loads it into its CUDA context once and launches it.
//! matmul is served by cuBLAS and has no file here; conv2d runs in cuDNN, and
//! its `conv2d.cu` only moves the kernel between Keras's layout and cuDNN's
//! (with `half_precision.cu` narrowing its operands for f16/bf16).
//!
//! Nothing here needs CUDA at build time: the sources are embedded with
//! `include_str!` and compiled on first use. NVRTC needs no GPU either, which
//! is how `tests/tests/cuda_kernels.rs` proves on every CI run, GPU or not,
//! that every kernel compiles for sm_80 and sm_90.
//!
//! Finding NVRTC: `libnvrtc.so.13` is looked up by name (the loader's search
//! path, `LD_LIBRARY_PATH`), or first loaded from the file or folder named by
//! the environment variable `THAW_NVRTC_LIB` (the PyPI package
//! `nvidia-cuda-nvrtc` puts it in `site-packages/nvidia/cu13/lib/`).
//! A missing library is an `Err`, never a panic.
//!
//! Every source is self-contained: NVRTC ships no `cuda_fp16.h`, so 16-bit
//! values travel as `unsigned short` bit patterns and convert through inline
//! PTX (see `half_precision.cu`). Kernels take raw pointers and sizes; all
//! shape checks happen on the host, in the op's `mod.rs`, before a launch.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};

/// Environment variable naming `libnvrtc.so.13` (the file, or the folder holding it).
pub const NVRTC_LIB_ENV: &str = "THAW_NVRTC_LIB";

/// File name of the NVRTC library that cudarc's `cuda-13000` bindings expect.
pub const NVRTC_LIB_NAME: &str = "libnvrtc.so.13";

/// Every kernel module: (module name, CUDA C source, names of its `__global__`
/// functions). The module name is the `.cu` file's stem; each function name
/// is an `extern "C"` symbol, so it appears unmangled in the PTX as
/// `.entry <name>(`.
pub const KERNELS: &[(&str, &str, &[&str])] = &[
    (
        "bilinear_resize",
        include_str!("bilinear_resize.cu"),
        &[
            "resize_bilinear_forward_f32",
            "resize_bilinear_u8_f32",
            "resize_bilinear_backward_f32",
        ],
    ),
    (
        "batch_norm",
        include_str!("batch_norm.cu"),
        &[
            "batch_norm_fold_f32",
            "scale_shift_f32",
            "scale_shift_relu_f32",
            "channel_scale_f32",
            "batch_norm_welford_partial_f32",
            "batch_norm_welford_final_f32",
            "batch_norm_backward_partial_f32",
            "batch_norm_backward_final_f32",
            "batch_norm_backward_dx_f32",
        ],
    ),
    (
        "elementwise",
        include_str!("elementwise.cu"),
        &[
            "fill_f32",
            "add_f32",
            "mul_f32",
            "accumulate_f32",
            "add_bias_f32",
            "mul_repeat_f32",
            "add_bias_inplace_f32",
            "relu_forward_f32",
            "relu_backward_f32",
            "relu6_forward_f32",
            "relu6_backward_f32",
            "bias_relu_forward_f32",
            "column_sum_partial_f32",
            "column_sum_final_f32",
            "add_broadcast_f32",
            "mul_broadcast_f32",
            "broadcast_reduce_f32",
            "broadcast_reduce_product_f32",
        ],
    ),
    (
        "global_pool",
        include_str!("global_pool.cu"),
        &[
            "global_avg_pool_forward_f32",
            "global_avg_pool_backward_f32",
            "global_max_pool_forward_f32",
            "global_max_pool_backward_f32",
        ],
    ),
    (
        "softmax_cross_entropy",
        include_str!("softmax_cross_entropy.cu"),
        &[
            "softmax_forward_f32",
            "softmax_backward_f32",
            "softmax_cross_entropy_forward_f32",
            "mean_f32",
            "softmax_cross_entropy_backward_f32",
        ],
    ),
    (
        "dropout",
        include_str!("dropout.cu"),
        &["dropout_forward_f32", "dropout_backward_f32"],
    ),
    ("adam", include_str!("adam.cu"), &["adam_update_f32"]),
    (
        "sgd",
        include_str!("sgd.cu"),
        &["sgd_update_f32", "sgd_momentum_update_f32"],
    ),
    ("conv2d", include_str!("conv2d.cu"), &["transpose_f32"]),
    (
        "depthwise_conv2d",
        include_str!("depthwise_conv2d.cu"),
        &[
            "depthwise_conv2d_forward_f32",
            "depthwise_conv2d_dx_f32",
            "depthwise_conv2d_dkernel_partial_f32",
        ],
    ),
    (
        "pool2d",
        include_str!("pool2d.cu"),
        &[
            "max_pool2d_forward_f32",
            "max_pool2d_backward_f32",
            "avg_pool2d_forward_f32",
            "avg_pool2d_backward_f32",
        ],
    ),
    (
        "concat",
        include_str!("concat.cu"),
        &["concat_forward_f32", "concat_backward_f32"],
    ),
    (
        "zero_pad2d",
        include_str!("zero_pad2d.cu"),
        &["zero_pad2d_forward_f32", "zero_pad2d_backward_f32"],
    ),
    (
        "half_precision",
        include_str!("half_precision.cu"),
        &["f32_to_f16", "f16_to_f32", "f32_to_bf16", "bf16_to_f32"],
    ),
];

/// The source and function names of kernel module `name`, if there is one.
pub fn module(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    KERNELS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, src, fns)| (src, fns))
}

/// The NVRTC options thaw compiles with, for GPU architecture `arch` ("sm_90").
///
/// `--device-as-default-execution-space` makes unannotated functions device
/// functions, so helpers shared with host C (the dropout generator) need no
/// `__device__` and no macro.
pub fn nvrtc_options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--device-as-default-execution-space".to_string(),
        "--std=c++17".to_string(),
    ]
}

/// Loads NVRTC once per process and returns its version `(major, minor)`, or
/// a message saying why it could not be loaded and how to fix that.
///
/// If `THAW_NVRTC_LIB` is set, that file (or `libnvrtc.so.13` in that
/// folder) is loaded first, globally, so that cudarc's own lookup by the
/// name `libnvrtc.so.13` finds the library already in memory.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    static LOADED: OnceLock<Result<(i32, i32), String>> = OnceLock::new();
    LOADED.get_or_init(load_nvrtc).clone()
}

fn load_nvrtc() -> Result<(i32, i32), String> {
    let hint = format!(
        "{NVRTC_LIB_NAME} not found: `pip install nvidia-cuda-nvrtc` (CUDA 13) and set \
         {NVRTC_LIB_ENV} to the library or its folder (site-packages/nvidia/cu13/lib), or add \
         that folder to LD_LIBRARY_PATH"
    );
    if let Some(path) = std::env::var_os(NVRTC_LIB_ENV) {
        let mut path = std::path::PathBuf::from(path);
        if path.is_dir() {
            path.push(NVRTC_LIB_NAME);
        }
        let lib = open_global(&path).map_err(|e| {
            format!(
                "{NVRTC_LIB_ENV}={} could not be loaded ({e}); {hint}",
                path.display()
            )
        })?;
        // Kept loaded for the life of the process: cudarc will resolve the same library by name.
        std::mem::forget(lib);
    }
    // SAFETY: only tries to dlopen the candidate names; loads no symbol.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(hint);
    }
    let version = catch_unwind(|| {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers; the library is present (checked above).
        let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        (status, major, minor)
    });
    match version {
        Ok((cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS, major, minor)) => Ok((major, minor)),
        Ok((status, _, _)) => Err(format!("nvrtcVersion failed with {status:?}; {hint}")),
        Err(_) => Err(format!(
            "the NVRTC library found lacks nvrtcVersion (not CUDA 13?); {hint}"
        )),
    }
}

#[cfg(unix)]
fn open_global(path: &std::path::Path) -> Result<libloading::os::unix::Library, String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading NVRTC runs only its own initialisers.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| with_sources(&e))
}

#[cfg(not(unix))]
fn open_global(path: &std::path::Path) -> Result<libloading::Library, String> {
    // SAFETY: loading NVRTC runs only its own initialisers.
    unsafe { libloading::Library::new(path) }.map_err(|e| with_sources(&e))
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

/// The PTX of kernel module `name` for GPU architecture `arch` (e.g. "sm_90").
///
/// Compiled with NVRTC on the first call for each (module, arch) and cached
/// for the rest of the process; later calls return the cached text. The error
/// names the module and carries NVRTC's log, or says why NVRTC is missing.
pub fn compile_ptx(name: &str, arch: &str) -> Result<String, String> {
    static CACHE: CompileCache<String> = OnceLock::new();
    cached(&CACHE, name, arch, compile_uncached)
}

/// Compiler output per (module, arch), for the rest of the process.
type CompileCache<T> = OnceLock<Mutex<HashMap<(String, String), T>>>;

/// Module `name` compiled for `arch` by `compile` (given the module's source)
/// on the first call, from `cache` on later ones.
fn cached<T: Clone>(
    cache: &CompileCache<T>,
    name: &str,
    arch: &str,
    compile: impl FnOnce(&str, &str, &str) -> Result<T, String>,
) -> Result<T, String> {
    let (source, _) = module(name).ok_or_else(|| {
        let known: Vec<&str> = KERNELS.iter().map(|(n, _, _)| *n).collect();
        format!("kernels: no kernel module named {name:?}; the modules are {known:?}")
    })?;
    // The lock is held while compiling, so each module compiles exactly once.
    let mut cache = cache
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (name.to_string(), arch.to_string());
    if let Some(compiled) = cache.get(&key) {
        return Ok(compiled.clone());
    }
    let compiled = compile(name, source, arch)?;
    cache.insert(key, compiled.clone());
    Ok(compiled)
}

/// Compiles `source` (module `name`) for `arch` without the cache: for tests
/// that time the compiler or check a source that is not in [`KERNELS`].
pub fn compile_uncached(name: &str, source: &str, arch: &str) -> Result<String, String> {
    nvrtc_version().map_err(|e| format!("kernels: cannot compile {name}.cu: {e}"))?;
    let opts = CompileOptions {
        name: Some(format!("{name}.cu")),
        options: nvrtc_options(arch),
        ..Default::default()
    };
    // cudarc panics on a few impossible-looking paths (a NUL in the source,
    // a missing symbol in an unexpected NVRTC version): turn those into errors too.
    let result = catch_unwind(AssertUnwindSafe(|| compile_ptx_with_opts(source, opts)))
        .map_err(|_| format!("kernels: NVRTC panicked while compiling {name}.cu for {arch}"))?;
    match result {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => Err(format!(
            "kernels: {name}.cu does not compile for {arch}:\n{}",
            log.to_string_lossy()
        )),
        Err(e) => Err(format!(
            "kernels: NVRTC failed on {name}.cu for {arch}: {e:?}"
        )),
    }
}

/// The CUBIN (machine code, SASS) of kernel module `name` for the real GPU
/// architecture `arch` (e.g. "sm_90"), compiled with NVRTC on the first call
/// for each (module, arch) and cached like [`compile_ptx`].
///
/// Why the engine loads this before the PTX: the driver JIT-compiles PTX
/// only when the PTX's ISA version is one it knows, so PTX from an NVRTC
/// newer than the driver (NVRTC 13.5 from PyPI on a CUDA 13.0 driver) is
/// rejected with `CUDA_ERROR_UNSUPPORTED_PTX_VERSION`, while machine code
/// for the GPU's own architecture loads on any driver of the same major
/// version (CUDA's minor-version compatibility). The ELF image starts with
/// `\x7fELF`.
pub fn compile_cubin(name: &str, arch: &str) -> Result<Vec<u8>, String> {
    static CACHE: CompileCache<Vec<u8>> = OnceLock::new();
    cached(&CACHE, name, arch, compile_cubin_uncached)
}

/// [`compile_cubin`] without the cache.
pub fn compile_cubin_uncached(name: &str, source: &str, arch: &str) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result, sys};
    nvrtc_version().map_err(|e| format!("kernels: cannot compile {name}.cu: {e}"))?;
    if !arch.starts_with("sm_") {
        return Err(format!(
            "kernels: a CUBIN needs a real architecture (sm_XY), not {arch:?}"
        ));
    }
    let src = std::ffi::CString::new(source)
        .map_err(|_| format!("kernels: {name}.cu holds a NUL byte"))?;
    let file = std::ffi::CString::new(format!("{name}.cu")).expect("module names hold no NUL");
    let compiled = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u8>, String> {
        let prog = result::create_program(&src, Some(&file))
            .map_err(|e| format!("kernels: NVRTC cannot create a program for {name}.cu: {e:?}"))?;
        // SAFETY: prog was created above and is destroyed once, at the end.
        let out = unsafe {
            match result::compile_program(prog, &nvrtc_options(arch)) {
                Err(e) => {
                    let log = result::get_program_log(prog)
                        .map(|l| {
                            std::ffi::CStr::from_ptr(l.as_ptr())
                                .to_string_lossy()
                                .into_owned()
                        })
                        .unwrap_or_default();
                    Err(format!(
                        "kernels: {name}.cu does not compile for {arch} ({e:?}):\n{log}"
                    ))
                }
                Ok(()) => {
                    let mut size = 0usize;
                    match sys::nvrtcGetCUBINSize(prog, &mut size).result() {
                        Err(e) => Err(format!("kernels: no CUBIN for {name}.cu ({arch}): {e:?}")),
                        Ok(()) => {
                            let mut cubin = vec![0u8; size];
                            sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
                                .result()
                                .map(|()| cubin)
                                .map_err(|e| {
                                    format!("kernels: no CUBIN for {name}.cu ({arch}): {e:?}")
                                })
                        }
                    }
                }
            }
        };
        // SAFETY: prog is a live program, destroyed only here.
        let _ = unsafe { result::destroy_program(prog) };
        out
    }));
    compiled.map_err(|_| format!("kernels: NVRTC panicked while compiling {name}.cu for {arch}"))?
}

/// The names of the kernels (`.entry` symbols) defined in a PTX text.
pub fn ptx_entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|line| {
            let rest = line.trim_start().split(".entry").nth(1)?;
            let name = rest
                .trim()
                .split(|c: char| c == '(' || c.is_whitespace())
                .next()?;
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_listed_once_and_names_its_functions_in_its_source() {
        let mut names: Vec<&str> = KERNELS.iter().map(|(n, _, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KERNELS.len(), "duplicate module names");
        for (name, src, fns) in KERNELS {
            assert!(!fns.is_empty(), "{name} lists no function");
            for f in *fns {
                let decl = format!("__global__ void {f}(");
                assert!(src.contains(&decl), "{name}.cu has no `{decl}`");
            }
        }
    }

    #[test]
    fn entries_are_read_from_ptx() {
        let ptx =
            ".visible .entry add_f32(\n\t.param .u64 a\n)\n.visible .entry relu_forward_f32(\n";
        assert_eq!(ptx_entries(ptx), vec!["add_f32", "relu_forward_f32"]);
    }

    #[test]
    fn unknown_module_is_an_error_listing_the_known_ones() {
        let err = compile_ptx("conv9d", "sm_90").unwrap_err();
        assert!(
            err.contains("conv9d") && err.contains("elementwise"),
            "{err}"
        );
    }
}
