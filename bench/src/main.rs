//! `thaw-bench`: thaw's CPU throughput on the workloads of
//! `bench/workloads.json`, and the thaw/PyTorch ratio table.
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--json thaw.json]      # thaw's table
//! python bench/pytorch_bench.py [--quick] [--json pytorch.json]      # PyTorch's table
//! cargo run --release -p bench -- --compare thaw.json pytorch.json  # the ratios
//! bench/run_all.sh [--quick]                                         # all three in one go
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

use clap::Parser;
use report::{Record, Results, RunInfo};
use spec::{Mode, Spec};
use std::path::PathBuf;

/// thaw's benchmark: conv2d forward/backward on VGG16 and ResNet50 layer
/// shapes, whole-backbone forward, a head training step and end-to-end
/// feature extraction, on the CPU, timed as the median of repeated runs
/// after warm-up. `bench/pytorch_bench.py` runs the same workloads with PyTorch.
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
    /// Print the thaw/other ratio table of two --json files and exit.
    #[arg(long, num_args = 2, value_names = ["THAW.json", "OTHER.json"])]
    compare: Option<Vec<PathBuf>>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let Some(files) = &cli.compare {
        let thaw = report::read_results(&files[0])?;
        let other = report::read_results(&files[1])?;
        println!("{}", report::compare(&thaw, &other));
        return Ok(());
    }
    let spec = Spec::load(&cli.spec)?;
    let mode = if cli.quick { Mode::Quick } else { Mode::Full };
    let threads = cli.threads.unwrap_or_else(|| {
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

    let info = RunInfo {
        engine: "thaw".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.name().into(),
        threads,
        cpu: report::cpu_model(),
        load_before: report::load_average(),
        load_after: Vec::new(),
        date: report::utc_now(),
    };
    eprintln!(
        "thaw-bench: {} mode, {threads} threads, load {:?}",
        mode.name(),
        info.load_before
    );
    let wanted = |name: &str, quick: bool| {
        (mode == Mode::Full || quick) && cli.filter.as_deref().is_none_or(|f| name.contains(f))
    };
    let mut records: Vec<Record> = Vec::new();
    let mut push = |r: Record| {
        if r.skipped.is_none() {
            eprintln!(
                "  {:<44} {:>10.2} ms  {}",
                r.name,
                r.median_s * 1e3,
                r.rate_text()
            );
        }
        records.push(r);
    };

    push(workloads::peak(&spec.peak, mode)?);
    for c in spec.conv2d.iter().filter(|c| wanted(&c.name, c.quick)) {
        for r in workloads::conv(c, &spec.conv2d_timing, mode)? {
            push(r);
        }
    }
    for b in spec.backbone.iter().filter(|b| wanted(&b.name, b.quick)) {
        push(workloads::backbone(b, mode)?);
    }
    if wanted(&spec.head.name, spec.head.quick) {
        push(workloads::head(&spec.head, mode)?);
    }
    let data = cli
        .data
        .or_else(|| std::env::var_os("THAW_BENCH_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/bench-data/cifar10-jpeg/test"));
    for e in spec.extract.iter().filter(|e| wanted(&e.name, e.quick)) {
        match workloads::select_images(&data, e.images) {
            Ok(files) => push(workloads::extract(e, &files, mode)?),
            Err(why) => {
                eprintln!("  {:<44} skipped: {why}", e.name);
                push(Record {
                    name: e.name.clone(),
                    shape: format!("N={} 32->{} px", e.images, e.size),
                    median_s: 0.0,
                    times_s: Vec::new(),
                    flops: 0.0,
                    items: 0.0,
                    unit: "img/s".into(),
                    skipped: Some(format!(
                        "{why} (unpack ../shared/data/cifar10-jpeg.tar.xz: bench/run_all.sh does)"
                    )),
                });
            }
        }
    }

    let results = Results {
        info: RunInfo {
            load_after: report::load_average(),
            ..info
        },
        records,
    };
    println!("{}", report::table(&results));
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write results to {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
