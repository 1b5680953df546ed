//! `thaw-bench`: thaw's throughput on the workloads of
//! `bench/workloads.json`, on the CPU or a GPU, and the thaw/PyTorch ratio table.
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--json thaw.json]      # thaw's table
//! thaw-bench --device cuda --json thaw-cuda.json                     # the GPU rows (.cuda-f32, -f16, -bf16)
//! thaw-bench --device auto --list                                    # the rows a run would produce
//! python bench/pytorch_bench.py [--quick] [--json pytorch.json]      # PyTorch's table
//! cargo run --release -p bench -- --compare thaw.json pytorch.json  # the ratios
//! thaw-bench --compare t1.json p1.json t2.json p2.json ...           # rounds: ratio per round, median
//! bench/run_all.sh [--quick] [--rounds N]                            # all three in one go
//! ```
//!
//! - [`spec`]: the workload list shared with `pytorch_bench.py`.
//! - [`workloads`]: thaw's side of each workload and its FLOP count.
//! - [`report`]: the timing rule, result files, tables and ratios.
//!
//! `BENCHMARKS.md` at the repository root holds the measured tables.

mod report;
mod spec;
mod workloads;

/// Large tensors start on a cache line, as in the trainer (see engine::memory).
#[global_allocator]
static ALLOC: engine::memory::CacheLineAligned = engine::memory::CacheLineAligned;

use clap::Parser;
use engine::{Device, Precision};
use report::{Record, Results, RunInfo};
use spec::{Mode, Spec};
use std::path::PathBuf;
use trainer::cli::DeviceChoice;
use workloads::{row_name, row_name_in};

/// thaw's benchmark: conv2d forward/backward on VGG16 and ResNet50 layer
/// shapes, depthwise convolution forward/backward on MobileNetV2's, whole-backbone forward, a head training step and end-to-end
/// feature extraction, on the CPU or a GPU, timed as the median of repeated
/// runs after warm-up. `bench/pytorch_bench.py` runs the same workloads with PyTorch.
#[derive(Debug, Parser)]
#[command(name = "thaw-bench")]
struct Cli {
    /// Only the workloads marked quick, with fewer repetitions (under a minute).
    #[arg(long)]
    quick: bool,
    /// Also write the results to this JSON file (for --compare).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only workloads whose name contains this text (the peak always runs).
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// The shared workload list.
    #[arg(long, value_name = "FILE", default_value = "bench/workloads.json")]
    spec: PathBuf,
    /// CIFAR-10 JPEG test folder (class subfolders) for the extract workloads.
    /// Default: $THAW_BENCH_DATA, else target/bench-data/cifar10-jpeg/test
    /// (bench/run_all.sh unpacks it there).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Threads for rayon (which runs thaw's GEMM) and for matrixmultiply (the
    /// f64 and non-AVX-512 GEMM). Default: every core.
    #[arg(long)]
    threads: Option<usize>,
    /// Where to run: the CPU, the first GPU (rows named `<workload>.cuda-f32`;
    /// an error without a usable GPU), or auto (the GPU if usable, else the
    /// CPU, saying why in one line).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// How cuDNN convolution algorithms are chosen on the GPU: `benchmark`
    /// times the candidates once per shape (cudnnFind; PyTorch's
    /// `torch.backends.cudnn.benchmark = True`), `heuristic` takes cuDNN's
    /// heuristic ranking (thaw's default outside the benchmark; PyTorch's
    /// `benchmark = False`). Both allow nondeterministic algorithms, as
    /// PyTorch does by default (`cudnn.deterministic = False`).
    /// `pytorch_bench.py --cudnn` takes the same values, so the two sides'
    /// GPU rows use one policy.
    #[arg(long, value_enum, default_value_t = CudnnChoice::Benchmark)]
    cudnn: CudnnChoice,
    /// Print the rows that would run on the chosen device, and exit.
    #[arg(long)]
    list: bool,
    /// Print the thaw/other ratio table of two --json files and exit. More
    /// pairs (THAW.json OTHER.json THAW2.json OTHER2.json ...) are rounds
    /// of the same workloads: a table of each round's ratio with their
    /// median and range, then each round's own table.
    #[arg(long, num_args = 2.., value_names = ["THAW.json", "OTHER.json"])]
    compare: Option<Vec<PathBuf>>,
}

/// `--cudnn`: how the GPU rows choose convolution algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CudnnChoice {
    Benchmark,
    Heuristic,
}

impl CudnnChoice {
    /// The engine's policy for this choice (nondeterministic algorithms
    /// allowed either way, as in PyTorch by default).
    fn policy(self) -> engine::ops::conv2d::AlgorithmPolicy {
        use engine::ops::conv2d::{AlgorithmPolicy, Search};
        AlgorithmPolicy {
            search: match self {
                CudnnChoice::Benchmark => Search::Benchmark,
                CudnnChoice::Heuristic => Search::Heuristic,
            },
            deterministic_only: false,
        }
    }
}

fn main() {
    // Reuse freed activation buffers instead of faulting in fresh pages for
    // every op's output (see engine::memory).
    engine::memory::keep_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The whole run: compare saved files, list the rows, or measure them.
fn run(cli: Cli) -> Result<(), String> {
    if let Some(files) = &cli.compare {
        return compare_files(files);
    }
    let spec = Spec::load(&cli.spec)?;
    let mode = if cli.quick { Mode::Quick } else { Mode::Full };
    let device = trainer::device::resolve(cli.device).map_err(|e| e.to_string())?;
    if cli.list {
        for name in plan(&spec, mode, cli.filter.as_deref(), device) {
            println!("{name}");
        }
        return Ok(());
    }
    let threads = start_threads(cli.threads)?;
    let info = RunInfo {
        engine: "thaw".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.name().into(),
        threads,
        cpu: report::cpu_model(),
        gpu: open_gpu(device, cli.cudnn)?,
        load_before: report::load_average(),
        load_after: Vec::new(),
        date: report::utc_now(),
    };
    eprintln!(
        "thaw-bench: {} mode, {threads} threads, {}, load {:?}",
        mode.name(),
        info.gpu.as_deref().unwrap_or("cpu"),
        info.load_before
    );
    let data = cli
        .data
        .clone()
        .or_else(|| std::env::var_os("THAW_BENCH_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/bench-data/cifar10-jpeg/test"));
    let mut rows = Rows::default();
    let wanted = |name: &str, quick: bool| selected(mode, cli.filter.as_deref(), name, quick);
    measure_all(&spec, mode, device, &data, &wanted, &mut rows);

    let results = Results {
        info: RunInfo {
            load_after: report::load_average(),
            ..info
        },
        records: rows.records,
    };
    println!("{}", report::table(&results));
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write results to {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if rows.failed > 0 {
        return Err(format!(
            "{} workload(s) failed on {device:?}: their rows say why",
            rows.failed
        ));
    }
    Ok(())
}

/// `--compare`: the ratio table of result files taken in (thaw, other) pairs.
fn compare_files(files: &[PathBuf]) -> Result<(), String> {
    if !files.len().is_multiple_of(2) {
        return Err(format!(
            "--compare takes pairs of result files (THAW.json OTHER.json ...), got {} files",
            files.len()
        ));
    }
    let rounds = files
        .chunks_exact(2)
        .map(|pair| {
            Ok((
                report::read_results(&pair[0])?,
                report::read_results(&pair[1])?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    println!("{}", report::compare_rounds(&rounds));
    Ok(())
}

/// Starts `threads` rayon threads (default: every core) and tells
/// matrixmultiply the same; returns the count.
fn start_threads(threads: Option<usize>) -> Result<usize, String> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // matrixmultiply reads MATMUL_NUM_THREADS once, at its first GEMM (its
    // default is the physical core count); rayon's pool is set here.
    std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| format!("cannot start {threads} rayon threads: {e}"))?;
    Ok(threads)
}

/// On a GPU: opens it with the `--cudnn` policy and returns its description.
fn open_gpu(device: Device, cudnn: CudnnChoice) -> Result<Option<String>, String> {
    let Device::Cuda(ordinal) = device else {
        return Ok(None);
    };
    let gpu = engine::cuda::CudaDevice::open(ordinal).map_err(|e| e.to_string())?;
    gpu.set_conv_algorithm_policy(cudnn.policy());
    eprintln!("thaw-bench: cuDNN algorithms by {cudnn:?} (--cudnn), nondeterministic allowed");
    Ok(Some(gpu.info().to_string()))
}

/// The measured rows, in table order, and how many workloads failed.
#[derive(Default)]
struct Rows {
    records: Vec<Record>,
    failed: usize,
}

impl Rows {
    /// Adds a row, printing it. A workload that fails (on a GPU: an op or
    /// library problem that only shows there) becomes a row saying so; the
    /// others still run.
    fn push(&mut self, r: Result<Record, String>, name: &str, shape: String) {
        let r = r.unwrap_or_else(|why| {
            eprintln!("  {name:<44} FAILED: {why}");
            self.failed += 1;
            skipped(name, shape, format!("failed: {why}"))
        });
        if r.skipped.is_none() {
            eprintln!(
                "  {:<44} {:>10.2} ms  {}",
                r.name,
                r.median_s * 1e3,
                r.rate_text()
            );
        }
        self.records.push(r);
    }

    /// Adds a workload's forward and backward rows, or two failed rows.
    fn push_pair(&mut self, r: Result<[Record; 2], String>, workload: &str, device: Device) {
        match r {
            Ok(rs) => rs
                .into_iter()
                .for_each(|r| self.push(Ok(r), "", String::new())),
            Err(why) => {
                for pass in ["fwd", "bwd"] {
                    let name = row_name(&format!("{workload}.{pass}"), device);
                    self.push(Err(why.clone()), &name, String::new());
                }
            }
        }
    }
}

/// Measures every wanted workload of `spec`, in table order (the peak always).
fn measure_all(
    spec: &Spec,
    mode: Mode,
    device: Device,
    data: &std::path::Path,
    wanted: &dyn Fn(&str, bool) -> bool,
    rows: &mut Rows,
) {
    let peak = match device {
        Device::Cpu => &spec.peak,
        Device::Cuda(_) => &spec.cuda.peak,
    };
    let peak_name = row_name(&peak.name, device);
    rows.push(
        workloads::peak(peak, mode, device),
        &peak_name,
        String::new(),
    );
    let gpu_batch = |batch| match device {
        Device::Cpu => batch,
        Device::Cuda(_) => spec.cuda.batch(batch),
    };
    for c in spec.conv2d.iter().filter(|c| wanted(&c.name, c.quick)) {
        let r = workloads::conv(c, &spec.conv2d_timing, mode, device);
        rows.push_pair(r, &c.name, device);
    }
    let depthwise = spec.depthwise_conv2d.iter();
    for d in depthwise.filter(|d| wanted(&d.name, d.quick)) {
        let r = workloads::depthwise(d, &spec.depthwise_timing, mode, device);
        rows.push_pair(r, &d.name, device);
    }
    for b in spec.backbone.iter().filter(|b| wanted(&b.name, b.quick)) {
        let batch = gpu_batch(b.batch);
        for &p in precisions(device) {
            rows.push(
                workloads::backbone(b, mode, device, batch, p),
                &row_name_in(&b.name, device, p),
                format!("n={batch} {}x{}x3", b.size, b.size),
            );
        }
    }
    if wanted(&spec.head.name, spec.head.quick) {
        let name = row_name(&spec.head.name, device);
        rows.push(
            workloads::head(&spec.head, mode, device),
            &name,
            String::new(),
        );
    }
    for e in spec.extract.iter().filter(|e| wanted(&e.name, e.quick)) {
        let images = match device {
            Device::Cpu => e.images,
            Device::Cuda(_) => spec.cuda.images(e.images),
        };
        let shape = format!("N={images} 32->{} px", e.size);
        for &p in precisions(device) {
            let name = row_name_in(&e.name, device, p);
            match workloads::select_images(data, images) {
                Ok(files) => rows.push(
                    workloads::extract(e, &files, mode, device, gpu_batch(e.batch), p),
                    &name,
                    shape.clone(),
                ),
                Err(why) => {
                    eprintln!("  {name:<44} skipped: {why}");
                    let why = format!(
                        "{why} (unpack ../shared/data/cifar10-jpeg.tar.xz: bench/run_all.sh does)"
                    );
                    rows.push(Ok(skipped(&name, shape.clone(), why)), &name, shape.clone());
                }
            }
        }
    }
}

/// The precisions the backbone and extract workloads run in: f32 on the
/// CPU (16 bits there is an emulation, not a speed); on a GPU also f16 and
/// bf16, to pair with PyTorch's autocast rows at equal precision.
fn precisions(device: Device) -> &'static [Precision] {
    match device {
        Device::Cpu => &[Precision::F32],
        Device::Cuda(_) => &Precision::ALL,
    }
}

/// A row that did not run, and why.
fn skipped(name: &str, shape: String, why: String) -> Record {
    Record {
        name: name.to_string(),
        shape,
        median_s: 0.0,
        times_s: Vec::new(),
        flops: 0.0,
        bytes: 0.0,
        items: 0.0,
        unit: "img/s".into(),
        skipped: Some(why),
    }
}

/// Whether a workload runs: in full mode every one, in quick mode those
/// marked quick; and only names containing `filter` when given.
fn selected(mode: Mode, filter: Option<&str>, name: &str, quick: bool) -> bool {
    (mode == Mode::Full || quick) && filter.is_none_or(|f| name.contains(f))
}

/// The rows a run on `device` produces, in table order (the peak always runs).
fn plan(spec: &Spec, mode: Mode, filter: Option<&str>, device: Device) -> Vec<String> {
    let mut rows = vec![row_name(&spec.peak.name, device)];
    for c in &spec.conv2d {
        if selected(mode, filter, &c.name, c.quick) {
            rows.push(row_name(&format!("{}.fwd", c.name), device));
            rows.push(row_name(&format!("{}.bwd", c.name), device));
        }
    }
    for d in &spec.depthwise_conv2d {
        if selected(mode, filter, &d.name, d.quick) {
            rows.push(row_name(&format!("{}.fwd", d.name), device));
            rows.push(row_name(&format!("{}.bwd", d.name), device));
        }
    }
    let mut add = |name: &str, quick: bool, precisions: &[Precision]| {
        if selected(mode, filter, name, quick) {
            rows.extend(precisions.iter().map(|&p| row_name_in(name, device, p)));
        }
    };
    for b in &spec.backbone {
        add(&b.name, b.quick, precisions(device));
    }
    add(&spec.head.name, spec.head.quick, &[Precision::F32]);
    for e in &spec.extract {
        add(&e.name, e.quick, precisions(device));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads.json"))
            .unwrap()
    }

    #[test]
    fn device_defaults_to_cpu_and_parses_cuda_and_auto() {
        let cli = Cli::try_parse_from(["thaw-bench"]).unwrap();
        assert_eq!(cli.device, DeviceChoice::Cpu);
        for (arg, want) in [("cuda", DeviceChoice::Cuda), ("auto", DeviceChoice::Auto)] {
            let cli = Cli::try_parse_from(["thaw-bench", "--device", arg]).unwrap();
            assert_eq!(cli.device, want);
        }
        let err = Cli::try_parse_from(["thaw-bench", "--device", "gpu"]).unwrap_err();
        assert!(
            err.to_string().contains("possible values: cpu, cuda, auto"),
            "{err}"
        );
    }

    #[test]
    fn gpu_rows_are_the_cpu_rows_with_the_pytorch_gpu_suffix() {
        let s = spec();
        let cpu = plan(&s, Mode::Quick, None, Device::Cpu);
        let gpu = plan(&s, Mode::Quick, None, Device::Cuda(0));
        // Every CPU row has its f32 GPU row, in order; backbone and extract
        // rows have f16 and bf16 rows right after it, and nothing else does.
        let f32_rows: Vec<&String> = gpu.iter().filter(|n| n.ends_with(".cuda-f32")).collect();
        assert_eq!(cpu.len(), f32_rows.len());
        for (c, g) in cpu.iter().zip(&f32_rows) {
            assert_eq!(*g, &format!("{c}.cuda-f32"));
        }
        for (i, g) in gpu.iter().enumerate() {
            let base = g.strip_suffix(".cuda-f32");
            let half =
                base.is_some_and(|b| b.starts_with("backbone.") || b.starts_with("extract."));
            if half {
                let b = base.unwrap();
                assert_eq!(gpu[i + 1], format!("{b}.cuda-f16"));
                assert_eq!(gpu[i + 2], format!("{b}.cuda-bf16"));
            }
        }
        let halves = gpu.iter().filter(|n| !n.ends_with(".cuda-f32")).count();
        let half_workloads = cpu
            .iter()
            .filter(|n| n.starts_with("backbone.") || n.starts_with("extract."))
            .count();
        assert_eq!(halves, 2 * half_workloads);
        assert!(gpu.iter().any(|n| n == "extract.resnet50@32.cuda-bf16"));
        assert!(gpu.iter().any(|n| n == "backbone.resnet50@32.cuda-f32"));
        assert!(gpu
            .iter()
            .any(|n| n == "conv.vgg16.block1_conv2@32.fwd.cuda-f32"));
        assert_eq!(gpu[0], "peak.sgemm.cuda-f32");
    }

    #[test]
    fn the_plan_follows_mode_and_filter() {
        let s = spec();
        let full = plan(&s, Mode::Full, None, Device::Cpu);
        assert_eq!(full.len(), s.names().len());
        let vgg = plan(&s, Mode::Full, Some("backbone.vgg16"), Device::Cpu);
        assert_eq!(
            vgg,
            [
                "peak.sgemm",
                "backbone.vgg16@32",
                "backbone.vgg16@64",
                "backbone.vgg16@224"
            ]
        );
    }
}
