//! The CUDA groundwork, checked on every machine, GPU or not:
//! - every kernel module in `kernels/` compiles with NVRTC for sm_80 and
//!   sm_90 and defines the functions the table promises (NVRTC needs no GPU;
//!   CI installs it from the PyPI package `nvidia-cuda-nvrtc`);
//! - probing CUDA never panics, and without a driver says so clearly;
//! - the dropout kernel's generator is thaw's generator: the C text in
//!   `dropout.cu` is compiled with the host C compiler and compared with
//!   `engine::rng`, which is itself checked against values written by
//!   `kernels/fixtures/generate_rng_values.py`.
//! Where a GPU is present, a few kernels also run on it against the CPU.
//! Tests that cannot run here print `SKIPPED: <why>`; none passes silently.

use engine::cuda;
use engine::rng::{mix64, random_u64, uniform_f32};
use std::path::PathBuf;
use std::time::Instant;

const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// NVRTC, or None after printing SKIPPED. A library named by THAW_NVRTC_LIB
/// that does not load is a failure, not a skip: CI asked for it.
fn nvrtc_or_skip() -> Option<(i32, i32)> {
    match kernels::nvrtc_version() {
        Ok(v) => Some(v),
        Err(e) if std::env::var_os(kernels::NVRTC_LIB_ENV).is_some() => {
            panic!(
                "{} is set but NVRTC does not load: {e}",
                kernels::NVRTC_LIB_ENV
            )
        }
        Err(e) => {
            tests::skipped(format_args!("libnvrtc.so.13 not found (pip install nvidia-cuda-nvrtc, set THAW_NVRTC_LIB)\n  ({e})"
            ));
            None
        }
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    let Some((major, minor)) = nvrtc_or_skip() else {
        return;
    };
    println!("NVRTC {major}.{minor}");
    println!(
        "{:<24} {:>6} {:>10} {:>10} {:>10}",
        "module", "arch", "compile", "cached", "PTX bytes"
    );
    let mut total_ms = 0.0;
    let mut failures = Vec::new();
    for (name, _, functions) in kernels::KERNELS {
        for arch in ARCHS {
            let t = Instant::now();
            let ptx = match kernels::compile_ptx(name, arch) {
                Ok(ptx) => ptx,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let compile_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let again = kernels::compile_ptx(name, arch).expect("second call hits the cache");
            let cached_ms = t.elapsed().as_secs_f64() * 1e3;
            total_ms += compile_ms;
            println!(
                "{name:<24} {arch:>6} {compile_ms:>8.0}ms {cached_ms:>8.3}ms {:>10}",
                ptx.len()
            );
            assert_eq!(
                ptx, again,
                "{name}/{arch}: the cache returned different PTX"
            );
            assert!(
                ptx.contains(&format!(".target {arch}")),
                "{name}/{arch}: PTX is not for {arch}"
            );
            let entries = kernels::ptx_entries(&ptx);
            for f in *functions {
                assert!(
                    entries.contains(f),
                    "{name}/{arch}: no `.entry {f}` in the PTX; entries are {entries:?}"
                );
            }
            for e in &entries {
                assert!(
                    functions.contains(e),
                    "{name}/{arch}: kernel {e} is not listed in kernels::KERNELS"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kernels that do not compile:\n{}",
        failures.join("\n\n")
    );
    println!("total first-compile time: {total_ms:.0} ms");
}

/// The engine loads machine code (CUBIN) for the GPU's own architecture
/// first, because a driver older than NVRTC rejects NVRTC's PTX: every
/// module must also compile to an ELF image for sm_80 and sm_90 (H100/H200),
/// and the names of its kernels must be in it.
#[test]
fn every_kernel_compiles_to_a_cubin_for_sm80_and_sm90() {
    let Some(_) = nvrtc_or_skip() else {
        return;
    };
    for (name, _, functions) in kernels::KERNELS {
        for arch in ARCHS {
            let cubin = kernels::compile_cubin(name, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                cubin.starts_with(b"\x7fELF"),
                "{name}/{arch}: the CUBIN is not an ELF image"
            );
            for f in *functions {
                assert!(
                    cubin.windows(f.len()).any(|w| w == f.as_bytes()),
                    "{name}/{arch}: no symbol {f} in the CUBIN"
                );
            }
            assert_eq!(kernels::compile_cubin(name, arch).unwrap(), cubin);
        }
    }
    let err =
        kernels::compile_cubin_uncached("x", "extern \"C\" __global__ void x() {}", "compute_90")
            .unwrap_err();
    assert!(err.contains("sm_"), "{err}");
    let broken = "extern \"C\" __global__ void broken(float* y) { y[0] = not_declared; }";
    let err = kernels::compile_cubin_uncached("broken", broken, "sm_90").unwrap_err();
    assert!(
        err.contains("broken.cu") && err.contains("not_declared"),
        "{err}"
    );
}

#[test]
fn a_kernel_that_does_not_compile_is_an_error_with_the_log() {
    let Some(_) = nvrtc_or_skip() else {
        return;
    };
    let broken = "extern \"C\" __global__ void broken(float* y) { y[0] = not_declared; }";
    let err = kernels::compile_uncached("broken", broken, "sm_90").unwrap_err();
    assert!(
        err.contains("broken.cu") && err.contains("not_declared"),
        "the error should name the file and carry NVRTC's log: {err}"
    );
}

#[test]
fn cuda_probe_never_panics_and_explains_itself() {
    match cuda::probe() {
        Ok(info) => {
            println!("found GPU: {info}");
            assert!(cuda::is_available());
            assert!(
                info.total_memory > 0 && info.compute_capability.0 >= 5,
                "{info:?}"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            println!("no GPU (as expected on a machine without one): {msg}");
            assert!(!cuda::is_available());
            assert!(
                msg.contains("--device cpu"),
                "the message should say what to do: {msg}"
            );
            let dev = cuda::CudaDevice::default_device().unwrap_err().to_string();
            assert!(dev.contains("--device cpu"), "{dev}");
        }
    }
}

#[test]
fn a_missing_driver_library_is_a_clear_error() {
    let err = cuda::probe_device("libcuda-thaw-test-missing.so.1", 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no CUDA driver found (libcuda-thaw-test-missing.so.1)")
            && err.contains("--device cpu"),
        "{err}"
    );
}

/// (seed, stream, index, random_u64, uniform numerator) rows of the fixture,
/// and its (k, mix64(k * golden)) SplitMix64 rows.
#[allow(clippy::type_complexity)]
fn rng_fixture() -> (Vec<(u64, u64, u64, u64, u64)>, Vec<(u64, u64)>) {
    let path = repo_root().join("kernels/fixtures/rng_values.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut random, mut splitmix) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
        match f.as_slice() {
            ["splitmix64", k, v] => splitmix.push((k.parse().unwrap(), hex(v))),
            ["random", s, t, i, v, k] => random.push((
                s.parse().unwrap(),
                t.parse().unwrap(),
                i.parse().unwrap(),
                hex(v),
                k.parse().unwrap(),
            )),
            _ => panic!("{}: unreadable line {line:?}", path.display()),
        }
    }
    assert!(
        random.len() >= 5 && splitmix.len() >= 3,
        "fixture too short"
    );
    (random, splitmix)
}

#[test]
fn rust_rng_matches_values_from_the_python_generator() {
    let (random, splitmix) = rng_fixture();
    for (k, expected) in splitmix {
        assert_eq!(
            mix64(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            expected,
            "splitmix64 #{k}"
        );
    }
    for (seed, stream, index, expected, numerator) in random {
        assert_eq!(
            random_u64(seed, stream, index),
            expected,
            "random_u64({seed}, {stream}, {index})"
        );
        assert_eq!(
            uniform_f32(seed, stream, index),
            numerator as f32 / 16_777_216.0,
            "uniform_f32({seed}, {stream}, {index})"
        );
    }
}

/// The generator's C text in dropout.cu, between its markers.
fn dropout_rng_c_source() -> &'static str {
    let (src, _) = kernels::module("dropout").expect("dropout module");
    let begin = src
        .find("// THAW_RNG BEGIN")
        .expect("THAW_RNG BEGIN marker in dropout.cu");
    let end = src
        .find("// THAW_RNG END")
        .expect("THAW_RNG END marker in dropout.cu");
    &src[begin..end]
}

#[test]
fn dropout_kernel_generator_uses_the_constants_of_rng_rs() {
    let hex_constants = |text: &str| {
        let mut found: Vec<u64> = text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter_map(|w| w.strip_prefix("0x"))
            .map(|w| w.trim_end_matches("ull").replace('_', ""))
            .filter(|w| w.len() == 16)
            .map(|w| u64::from_str_radix(&w, 16).unwrap())
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let c = hex_constants(dropout_rng_c_source());
    let rng_rs = std::fs::read_to_string(repo_root().join("engine/src/rng.rs")).unwrap();
    let rust = hex_constants(&rng_rs);
    assert_eq!(
        c.len(),
        3,
        "dropout.cu's generator should use 3 64-bit constants: {c:x?}"
    );
    assert_eq!(
        c, rust,
        "dropout.cu and engine/src/rng.rs use different constants"
    );
    for shift in [">> 30", ">> 27", ">> 31", ">> 40"] {
        assert!(
            dropout_rng_c_source().contains(shift),
            "dropout.cu's generator lacks `{shift}`"
        );
    }
}

#[test]
fn dropout_kernel_generator_compiled_as_host_c_matches_rust() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("thaw_rng_c");
    std::fs::create_dir_all(&dir).unwrap();
    let (random, _) = rng_fixture();
    // The fixture's triples plus a spread of others.
    let mut triples: Vec<(u64, u64, u64)> = random.iter().map(|r| (r.0, r.1, r.2)).collect();
    for i in 0..500u64 {
        triples.push((random_u64(1, 1, i), i % 7, random_u64(2, 2, i) >> (i % 64)));
    }
    let program = format!(
        "#include <stdio.h>\n{}\nint main(void) {{\n  unsigned long long s, t, i;\n  \
         while (scanf(\"%llu %llu %llu\", &s, &t, &i) == 3) {{\n    \
         float u = thaw_uniform_f32(s, t, i);\n    unsigned int bits;\n    \
         memcpy(&bits, &u, 4);\n    printf(\"%llu %u\\n\", thaw_random_u64(s, t, i), bits);\n  }}\n  \
         return 0;\n}}\n",
        dropout_rng_c_source()
    )
    .replace("#include <stdio.h>", "#include <stdio.h>\n#include <string.h>");
    let c_file = dir.join("rng.c");
    let exe = dir.join("rng");
    std::fs::write(&c_file, program).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let compiled = std::process::Command::new(&cc)
        .args(["-std=c99", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&c_file)
        .output();
    let compiled = match compiled {
        Ok(out) => out,
        Err(e) => {
            tests::skipped(format_args!(
                "no host C compiler ({cc}: {e}); set CC to check dropout.cu's generator"
            ));
            return;
        }
    };
    assert!(
        compiled.status.success(),
        "dropout.cu's generator is not plain C99:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let input: String = triples
        .iter()
        .map(|(s, t, i)| format!("{s} {t} {i}\n"))
        .collect();
    let mut child = std::process::Command::new(&exe)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), triples.len());
    for ((s, t, i), line) in triples.iter().zip(lines) {
        let (x, bits) = line.split_once(' ').unwrap();
        assert_eq!(
            x.parse::<u64>().unwrap(),
            random_u64(*s, *t, *i),
            "C random_u64({s}, {t}, {i})"
        );
        assert_eq!(
            bits.parse::<u32>().unwrap(),
            uniform_f32(*s, *t, *i).to_bits(),
            "C uniform_f32({s}, {t}, {i})"
        );
    }
    println!(
        "dropout.cu's generator, built with {cc}, agrees with engine::rng on {} triples",
        triples.len()
    );
}

/// On a machine with a GPU: dropout and ReLU kernels run and agree with the
/// CPU bit for bit. Elsewhere: SKIPPED.
#[test]
fn gpu_dropout_and_relu_kernels_match_the_cpu() {
    use cuda::cudarc::driver::PushKernelArg;
    let dev = match cuda::CudaDevice::default_device() {
        Ok(dev) => dev,
        Err(e) => {
            tests::skipped(format_args!("no GPU ({e})"));
            return;
        }
    };
    println!("running on {}", dev.info());
    let stream = dev.stream();
    let n = 10_007usize;
    let x: Vec<f32> = (0..n)
        .map(|i| uniform_f32(5, 6, i as u64) * 2.0 - 1.0)
        .collect();
    // rate and scale as the CPU reference (ops/dropout/cpu.rs) forms them: f64, then f32.
    let (seed, stream_id, rate_f64) = (1234u64, 77u64, 0.3f64);
    let (rate, scale) = (rate_f64 as f32, (1.0 / (1.0 - rate_f64)) as f32);
    let x_dev = stream.clone_htod(&x).unwrap();
    let mut y_dev = stream.alloc_zeros::<f32>(n).unwrap();
    let f = dev.function("dropout", "dropout_forward_f32").unwrap();
    let n64 = n as u64;
    let mut launch = stream.launch_builder(&f);
    launch
        .arg(&x_dev)
        .arg(&mut y_dev)
        .arg(&n64)
        .arg(&seed)
        .arg(&stream_id)
        .arg(&rate)
        .arg(&scale);
    // SAFETY: argument types and order match dropout_forward_f32 in dropout.cu.
    unsafe { launch.launch(cuda::launch_1d(n)) }.unwrap();
    let y = stream.clone_dtoh(&y_dev).unwrap();
    for i in 0..n {
        let keep = uniform_f32(seed, stream_id, i as u64) >= rate;
        let expected = if keep { x[i] * scale } else { 0.0 };
        assert_eq!(y[i].to_bits(), expected.to_bits(), "dropout element {i}");
    }
    let f = dev.function("elementwise", "relu_forward_f32").unwrap();
    let mut launch = stream.launch_builder(&f);
    launch.arg(&x_dev).arg(&mut y_dev).arg(&n64);
    // SAFETY: argument types and order match relu_forward_f32 in elementwise.cu.
    unsafe { launch.launch(cuda::launch_1d(n)) }.unwrap();
    let y = stream.clone_dtoh(&y_dev).unwrap();
    for i in 0..n {
        assert_eq!(y[i], x[i].max(0.0), "relu element {i}");
    }
}

/// The math of the kernels that need no cooperation between threads
/// (resize forward/backward and the fused uint8 input in each preprocessing
/// mode, Adam and SGD
/// against the CPU's f32 loops bit for bit, global pooling, mul and the
/// general add/mul broadcast with its gradient) run on the host: `kernels/host_check/main.cpp` compiles the `.cu`
/// files with the host C++ compiler through a tiny CUDA shim and compares
/// each kernel with a plain loop written from its header's formula. This
/// checks the math on every machine; it says nothing about CUDA itself.
#[test]
fn kernel_math_checked_on_the_host() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("thaw_host_check");
    std::fs::create_dir_all(&dir).unwrap();
    let root = repo_root().join("kernels");
    let exe = dir.join("host_check");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let compiled = std::process::Command::new(&cxx)
        .args(["-std=c++17", "-O1", "-Wall", "-Werror", "-I"])
        .arg(root.join("src"))
        .arg(root.join("host_check/main.cpp"))
        .arg("-o")
        .arg(&exe)
        .output();
    let compiled = match compiled {
        Ok(out) => out,
        Err(e) => {
            tests::skipped(format_args!(
                "no host C++ compiler ({cxx}: {e}); set CXX to check the kernels' math"
            ));
            return;
        }
    };
    assert!(
        compiled.status.success(),
        "kernels/host_check does not build:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let out = std::process::Command::new(&exe).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "a kernel disagrees with its formula:\n{report}"
    );
    assert!(
        report.lines().count() >= 20,
        "host check printed too little:\n{report}"
    );
}
