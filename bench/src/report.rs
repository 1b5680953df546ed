//! Timing, results and tables: the measurement rule both sides share
//! (untimed warm-up runs, then the median of timed runs), the result file
//! written by `--json` (the same fields as `pytorch_bench.py` writes), the
//! per-engine table, and the thaw/PyTorch ratio table of `--compare`.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// One measured (or skipped) workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The workload name of `workloads.json` (the join key of `--compare`).
    pub name: String,
    /// Shape and batch, as read by people.
    pub shape: String,
    /// Median seconds of one timed run (0 when skipped).
    pub median_s: f64,
    /// Every timed run, in order.
    pub times_s: Vec<f64>,
    /// Floating-point operations of one run, 2 per multiply-add (0: not counted).
    pub flops: f64,
    /// Bytes one run must at least move to or from memory (0: not counted;
    /// the depthwise rows, which are bound by memory, not arithmetic).
    #[serde(default)]
    pub bytes: f64,
    /// Images (or steps) processed by one run.
    pub items: f64,
    /// What `items` counts per second: "img/s", "step/s", or "" for none.
    pub unit: String,
    /// Why the workload did not run, if it did not.
    pub skipped: Option<String>,
}

impl Record {
    /// GFLOP/s of the median run (None if not counted or skipped).
    pub fn gflops(&self) -> Option<f64> {
        (self.flops > 0.0 && self.median_s > 0.0).then(|| self.flops / self.median_s / 1e9)
    }

    /// GB/s of the median run (None if not counted or skipped).
    pub fn gbytes_per_s(&self) -> Option<f64> {
        (self.bytes > 0.0 && self.median_s > 0.0).then(|| self.bytes / self.median_s / 1e9)
    }

    /// Items per second of the median run (None without a unit).
    pub fn rate(&self) -> Option<f64> {
        (!self.unit.is_empty() && self.median_s > 0.0).then(|| self.items / self.median_s)
    }

    /// "123.4 GFLOP/s", "56.7 img/s, 89.0 GFLOP/s, 12.0 GB/s" or "12.3 step/s, ..." for tables.
    pub fn rate_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.rate() {
            parts.push(format!("{} {}", sig(r), self.unit));
        }
        if let Some(g) = self.gflops() {
            parts.push(format!("{} GFLOP/s", sig(g)));
        }
        if let Some(b) = self.gbytes_per_s() {
            parts.push(format!("{} GB/s", sig(b)));
        }
        parts.join(", ")
    }
}

/// Where and how a result file was measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// "thaw" or "pytorch".
    pub engine: String,
    /// Engine version ("torch 2.x" for PyTorch).
    pub version: String,
    /// "quick" or "full".
    pub mode: String,
    /// Threads the engine was told to use.
    pub threads: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// The GPU the run used, if any (absent in files from CPU-only runs).
    #[serde(default)]
    pub gpu: Option<String>,
    /// 1, 5 and 15-minute load averages before and after the run.
    pub load_before: Vec<f64>,
    pub load_after: Vec<f64>,
    /// UTC time the run started, ISO 8601.
    pub date: String,
}

/// A result file: the run and its records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub info: RunInfo,
    pub records: Vec<Record>,
}

/// Runs `f` `warmup` times untimed, then `reps` times timed; returns the
/// timed seconds in order. Stops at the first error.
pub fn measure<E>(
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Vec<f64>, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// The median (the mean of the two middle values for an even count, as
/// Python's `statistics.median`); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// 1, 5, 15-minute load averages (empty where /proc/loadavg is missing).
pub fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The CPU model name from /proc/cpuinfo ("unknown" elsewhere).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Three significant digits, no exponent, for tables.
pub fn sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

/// Milliseconds with three significant digits.
fn ms(seconds: f64) -> String {
    sig(seconds * 1e3)
}

/// Whether a row ran on a GPU: its name ends in `.cuda-<dtype>`.
pub fn is_gpu_row(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, last)| last.starts_with("cuda-"))
}

/// The peak GEMM GFLOP/s of the device a row ran on (the CPU peak for CPU
/// rows, the GPU's f32 peak for GPU rows), if it ran.
pub fn peak_gflops(r: &Results, row: &str) -> Option<f64> {
    let gpu = is_gpu_row(row);
    r.records
        .iter()
        .find(|x| x.name.starts_with("peak.") && is_gpu_row(&x.name) == gpu)
        .and_then(Record::gflops)
}

/// "peak sgemm 123 GFLOP/s (cpu), 45600 GFLOP/s (cuda-f32)": every peak row.
fn peaks_text(r: &Results) -> String {
    r.records
        .iter()
        .filter(|x| x.name.starts_with("peak."))
        .filter_map(|x| {
            let device = x.name.rsplit_once('.').map_or("", |(_, d)| d);
            let device = if is_gpu_row(&x.name) { device } else { "cpu" };
            x.gflops().map(|g| format!("{} GFLOP/s ({device})", sig(g)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The machine line of a result file: CPU, and GPU when one was used.
fn machine(r: &RunInfo) -> String {
    match &r.gpu {
        Some(gpu) => format!("{} + {gpu}", r.cpu),
        None => r.cpu.clone(),
    }
}

/// One engine's table (markdown, readable in a terminal too).
pub fn table(r: &Results) -> String {
    let mut out = format!(
        "{} {} ({} mode, {} threads) on {}, {}; load before {:?}, after {:?}\n",
        r.info.engine,
        r.info.version,
        r.info.mode,
        r.info.threads,
        machine(&r.info),
        r.info.date,
        r.info.load_before,
        r.info.load_after
    );
    let peaks = peaks_text(r);
    if !peaks.is_empty() {
        out += &format!("peak (large sgemm): {peaks}\n");
    }
    out +=
        "\n| workload | shape / batch | median ms | rate | % of peak |\n|---|---|---:|---|---:|\n";
    for x in &r.records {
        if let Some(why) = &x.skipped {
            out += &format!("| {} | {} | skipped | {why} | |\n", x.name, x.shape);
            continue;
        }
        // Against the f32 peak: meaningless for f16/bf16 rows (tensor cores).
        let pct = match (x.gflops(), peak_gflops(r, &x.name)) {
            (Some(g), Some(p)) if p > 0.0 && !is_half_row(&x.name) => {
                format!("{:.0}%", 100.0 * g / p)
            }
            _ => String::new(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {pct} |\n",
            x.name,
            x.shape,
            ms(x.median_s),
            x.rate_text()
        );
    }
    out
}

/// Whether a row ran in half precision (PyTorch autocast `.cuda-f16`/`.cuda-bf16`).
fn is_half_row(name: &str) -> bool {
    name.ends_with(".cuda-f16") || name.ends_with(".cuda-bf16")
}

/// The ratio table: `thaw` and `other` joined by workload name, with the
/// speed ratio other_time / thaw_time (above 1: thaw is faster). Rows whose
/// FLOP counts disagree by more than 0.1% get a note: the two sides did not
/// run the same work.
///
/// thaw's 16-bit GPU rows (`<w>.cuda-f16`, `.cuda-bf16`: backbone and
/// extract) pair with PyTorch's autocast rows by name, like any row. Where
/// thaw has no 16-bit row of a workload (a run from before, or a conv row),
/// the other side's half rows come under thaw's `<w>.cuda-f32` row with their
/// ratio marked `†`: thaw f32 against PyTorch half precision, unequal work
/// per FLOP, shown because the GPU targets of issue 6 are set against
/// PyTorch's f16/bf16, not claimed as like-for-like.
pub fn compare(thaw: &Results, other: &Results) -> String {
    let by_name: HashMap<&str, &Record> =
        other.records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut out = String::new();
    for r in [thaw, other] {
        out += &run_line(r);
    }
    out += &format!(
        "\n| workload | shape / batch | thaw ms | thaw | {o} ms | {o} | thaw/{o} speed |\n|---|---|---:|---|---:|---|---:|\n",
        o = other.info.engine
    );
    let mut notes = Vec::new();
    let mut half_rows = false;
    for t in &thaw.records {
        let Some(o) = by_name.get(t.name.as_str()) else {
            out += &format!(
                "| {} | {} | {} | {} | | not run | |\n",
                t.name,
                t.shape,
                ms(t.median_s),
                t.rate_text()
            );
            continue;
        };
        let ((tm, tr), (om, or)) = (cell(t), cell(o));
        let ratio = ratio_text(t, o, "");
        out += &format!(
            "| {} | {} | {tm} | {tr} | {om} | {or} | {ratio} |\n",
            t.name, t.shape
        );
        if t.flops > 0.0 && o.flops > 0.0 && (t.flops - o.flops).abs() > 1e-3 * t.flops.max(o.flops)
        {
            notes.push(format!(
                "{}: FLOP counts differ (thaw {:.4e}, {} {:.4e}): not the same work",
                t.name, t.flops, other.info.engine, o.flops
            ));
        }
        let halves = other_half_rows(t, thaw, &by_name);
        half_rows |= !halves.is_empty();
        out += &halves;
    }
    out += &other_only_rows(thaw, other);
    if half_rows {
        out += &format!(
            "\n† thaw f32 against {} autocast f16/bf16: unequal precision, not a like-for-like \
             ratio (thaw has no 16-bit row of that workload). Issue 6's GPU targets are set \
             against these rows.",
            other.info.engine
        );
    }
    for n in notes {
        out += &format!("\nNOTE {n}");
    }
    out
}

/// One engine's run: version, mode, threads, machine, start time, load
/// and (where measured) its peak sgemm, as a list item.
fn run_line(r: &Results) -> String {
    let mut line = format!(
        "- {} {}: {} mode, {} threads, {}, started {}, load before {:?} after {:?}",
        r.info.engine,
        r.info.version,
        r.info.mode,
        r.info.threads,
        machine(&r.info),
        r.info.date,
        r.info.load_before,
        r.info.load_after
    );
    let peaks = peaks_text(r);
    if !peaks.is_empty() {
        line += &format!(", peak sgemm {peaks}");
    }
    line + "\n"
}

/// A row's time and rate cells, or "skipped".
fn cell(r: &Record) -> (String, String) {
    match &r.skipped {
        Some(_) => ("skipped".to_string(), String::new()),
        None => (ms(r.median_s), r.rate_text()),
    }
}

/// The other side's time over thaw's, with `mark` after it; empty when
/// either row was skipped.
fn ratio_text(thaw: &Record, other: &Record, mark: &str) -> String {
    if thaw.skipped.is_none() && other.skipped.is_none() && thaw.median_s > 0.0 {
        format!("{:.2}x{mark}", other.median_s / thaw.median_s)
    } else {
        String::new()
    }
}

/// The other side's half-precision rows of thaw's f32 GPU row `t`, set
/// beside it, where thaw has no row of that precision to pair with them
/// by name.
fn other_half_rows(t: &Record, thaw: &Results, by_name: &HashMap<&str, &Record>) -> String {
    let Some(base) = t.name.strip_suffix(".cuda-f32") else {
        return String::new();
    };
    let mut out = String::new();
    for half in ["f16", "bf16"] {
        let half_name = format!("{base}.cuda-{half}");
        if thaw.records.iter().any(|t| t.name == half_name) {
            continue;
        }
        let Some(h) = by_name.get(half_name.as_str()) else {
            continue;
        };
        let (hm, hr) = cell(h);
        let ratio = ratio_text(t, h, " †");
        out += &format!(
            "| {} | {} | (f32 above) | | {hm} | {hr} | {ratio} |\n",
            h.name, h.shape
        );
    }
    out
}

/// The other side's rows that thaw did not run (its half-precision rows
/// already set beside thaw's f32 row excepted).
fn other_only_rows(thaw: &Results, other: &Results) -> String {
    let paired_half = |name: &str| {
        is_half_row(name)
            && name.rsplit_once(".cuda-").is_some_and(|(base, _)| {
                thaw.records
                    .iter()
                    .any(|t| t.name == format!("{base}.cuda-f32"))
            })
    };
    let mut out = String::new();
    for o in &other.records {
        if !thaw.records.iter().any(|t| t.name == o.name) && !paired_half(&o.name) {
            out += &format!(
                "| {} | {} | not run | | {} | {} | |\n",
                o.name,
                o.shape,
                if o.skipped.is_some() {
                    "skipped".into()
                } else {
                    ms(o.median_s)
                },
                o.rate_text()
            );
        }
    }
    out
}

/// The thaw/other ratios of several rounds (each a thaw run and an other
/// run of the same workloads, taken back to back), one column per round,
/// then their median and range. On a shared machine one row of one run can
/// be off by 2x; a ratio that holds in every round is one that can be
/// quoted. Rows skipped or missing on either side in a round leave that
/// round's cell empty and do not count towards the median. With one round
/// this is [`compare`]'s table alone.
pub fn compare_rounds(rounds: &[(Results, Results)]) -> String {
    let Some((first_thaw, first_other)) = rounds.first() else {
        return String::new();
    };
    if rounds.len() == 1 {
        return compare(first_thaw, first_other);
    }
    let other_engine = &first_other.info.engine;
    let mut out = format!(
        "{} rounds of thaw and {other_engine} back to back; ratio = {other_engine} time / \
         thaw time (above 1: thaw faster). Each round's own table follows this one.\n\n",
        rounds.len()
    );
    out += "| workload | shape / batch |";
    for r in 1..=rounds.len() {
        out += &format!(" round {r} |");
    }
    out += " median | range |\n|---|---|";
    out += &"---:|".repeat(rounds.len() + 2);
    out += "\n";
    for t in &first_thaw.records {
        let ratios: Vec<Option<f64>> = rounds
            .iter()
            .map(|(thaw, other)| {
                let t = thaw.records.iter().find(|r| r.name == t.name)?;
                let o = other.records.iter().find(|r| r.name == t.name)?;
                let ran = t.skipped.is_none() && o.skipped.is_none() && t.median_s > 0.0;
                ran.then(|| o.median_s / t.median_s)
            })
            .collect();
        let measured: Vec<f64> = ratios.iter().flatten().copied().collect();
        if measured.is_empty() {
            continue;
        }
        out += &format!("| {} | {} |", t.name, t.shape);
        for r in &ratios {
            out += &match r {
                Some(r) => format!(" {r:.2}x |"),
                None => " |".into(),
            };
        }
        let (lo, hi) = measured
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        out += &format!(" {:.2}x | {lo:.2}-{hi:.2}x |\n", median(&measured));
    }
    for (i, (thaw, other)) in rounds.iter().enumerate() {
        out += &format!("\n### Round {}\n\n{}\n", i + 1, compare(thaw, other));
    }
    out
}

/// Reads a result file written by either side.
pub fn read_results(path: &Path) -> Result<Results, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read results {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "results {} are not a thaw-bench/pytorch_bench.py --json file: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, median_s: f64, flops: f64) -> Record {
        Record {
            name: name.into(),
            shape: "s".into(),
            median_s,
            times_s: vec![median_s],
            flops,
            bytes: 0.0,
            items: 4.0,
            unit: "img/s".into(),
            skipped: None,
        }
    }

    fn results(engine: &str, records: Vec<Record>) -> Results {
        Results {
            info: RunInfo {
                engine: engine.into(),
                version: "v".into(),
                mode: "quick".into(),
                threads: 2,
                cpu: "cpu".into(),
                gpu: None,
                load_before: vec![0.0; 3],
                load_after: vec![0.0; 3],
                date: "d".into(),
            },
            records,
        }
    }

    #[test]
    fn median_matches_pythons_statistics_median() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn ratio_is_other_time_over_thaw_time_and_flop_mismatch_is_flagged() {
        let t = results("thaw", vec![record("a", 0.5, 1e9), record("b", 1.0, 1e9)]);
        let o = results(
            "pytorch",
            vec![record("a", 1.0, 1e9), record("b", 1.0, 2e9)],
        );
        let table = compare(&t, &o);
        let row_a = table.lines().find(|l| l.starts_with("| a |")).unwrap();
        assert!(row_a.ends_with("| 2.00x |"), "{row_a}");
        assert!(table.contains("NOTE b: FLOP counts differ"), "{table}");
        assert!(!table.contains("NOTE a"), "{table}");
    }

    #[test]
    fn rounds_give_each_rounds_ratio_then_the_median_and_range() {
        let round = |thaw_a: f64, other_a: f64| {
            (
                results(
                    "thaw",
                    vec![record("a", thaw_a, 1e9), record("b", 1.0, 1e9)],
                ),
                results("pytorch", vec![record("a", other_a, 1e9)]),
            )
        };
        let rounds = [round(1.0, 0.5), round(1.0, 2.0), round(0.5, 0.5)];
        let table = compare_rounds(&rounds);
        let row_a = table.lines().find(|l| l.starts_with("| a |")).unwrap();
        assert!(
            row_a.ends_with("| 0.50x | 2.00x | 1.00x | 1.00x | 0.50-2.00x |"),
            "{row_a}"
        );
        // b never ran on the other side: no summary row, only the rounds' own tables.
        let summary = table.split("### Round").next().unwrap();
        assert!(!summary.lines().any(|l| l.starts_with("| b |")), "{table}");
        assert_eq!(table.matches("### Round").count(), 3, "{table}");
        // One round is compare's table, nothing more.
        assert_eq!(
            compare_rounds(&rounds[..1]),
            compare(&rounds[0].0, &rounds[0].1)
        );
    }

    #[test]
    fn thaws_own_half_precision_rows_pair_with_autocast_at_equal_precision() {
        let t = results(
            "thaw",
            vec![
                record("w.cuda-f32", 0.2, 1e9),
                record("w.cuda-f16", 0.05, 1e9),
            ],
        );
        let o = results(
            "pytorch",
            vec![
                record("w.cuda-f32", 0.4, 1e9),
                record("w.cuda-f16", 0.1, 1e9),
                record("w.cuda-bf16", 0.1, 1e9),
            ],
        );
        let table = compare(&t, &o);
        let f16: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| w.cuda-f16 |"))
            .collect();
        // One f16 row, thaw's against PyTorch's, no dagger; bf16 (no thaw row) keeps it.
        assert_eq!(f16.len(), 1, "{table}");
        assert!(f16[0].ends_with("| 2.00x |"), "{table}");
        let bf16 = table
            .lines()
            .find(|l| l.starts_with("| w.cuda-bf16 |"))
            .unwrap();
        assert!(
            bf16.ends_with("| 0.50x † |") && bf16.contains("(f32 above)"),
            "{table}"
        );
    }

    #[test]
    fn gpu_rows_pair_by_name_and_half_precision_sits_beside_f32_marked() {
        let t = results(
            "thaw",
            vec![
                record("peak.sgemm.cuda-f32", 0.01, 1e12),
                record("w.cuda-f32", 0.2, 1e9),
            ],
        );
        let o = results(
            "pytorch",
            vec![
                record("peak.sgemm", 1.0, 1e10),
                record("peak.sgemm.cuda-f32", 0.02, 1e12),
                record("w.cuda-f32", 0.4, 1e9),
                record("w.cuda-f16", 0.1, 1e9),
                record("w.cuda-bf16", 0.1, 1e9),
                record("v.cuda-f16", 0.1, 1e9),
            ],
        );
        let table = compare(&t, &o);
        let lines: Vec<&str> = table.lines().collect();
        let at = |p: &str| lines.iter().position(|l| l.starts_with(p)).unwrap();
        assert!(
            lines[at("| w.cuda-f32 |")].ends_with("| 2.00x |"),
            "{table}"
        );
        // f16 then bf16 right under thaw's f32 row, ratio marked as unequal precision.
        assert_eq!(at("| w.cuda-f16 |"), at("| w.cuda-f32 |") + 1, "{table}");
        assert_eq!(at("| w.cuda-bf16 |"), at("| w.cuda-f32 |") + 2, "{table}");
        assert!(
            lines[at("| w.cuda-f16 |")].contains("(f32 above)"),
            "{table}"
        );
        assert!(
            lines[at("| w.cuda-f16 |")].ends_with("| 0.50x † |"),
            "{table}"
        );
        assert!(
            table.contains("† thaw f32 against pytorch autocast f16/bf16"),
            "{table}"
        );
        // A half row without a thaw f32 counterpart, and the CPU peak, are listed as not run by thaw.
        assert!(
            lines[at("| v.cuda-f16 |")].contains("| not run |"),
            "{table}"
        );
        assert!(
            lines[at("| peak.sgemm |")].contains("| not run |"),
            "{table}"
        );
        assert!(
            lines[at("| peak.sgemm.cuda-f32 |")].ends_with("| 2.00x |"),
            "{table}"
        );
        // Each side's peaks, per device.
        assert!(
            table.contains("peak sgemm 100000 GFLOP/s (cuda-f32)\n"),
            "{table}"
        );
        assert!(
            table.contains("10.0 GFLOP/s (cpu), 50000 GFLOP/s (cuda-f32)"),
            "{table}"
        );
    }

    #[test]
    fn percent_of_peak_uses_the_rows_own_device() {
        let r = results(
            "thaw",
            vec![
                record("peak.sgemm", 1.0, 100e9),
                record("peak.sgemm.cuda-f32", 1.0, 1000e9),
                record("a", 1.0, 50e9),
                record("a.cuda-f32", 1.0, 500e9),
                record("a.cuda-f16", 1.0, 5000e9),
            ],
        );
        let t = table(&r);
        let row = |p: &str| t.lines().find(|l| l.starts_with(p)).unwrap().to_string();
        assert!(row("| a |").ends_with("| 50% |"), "{t}");
        assert!(row("| a.cuda-f32 |").ends_with("| 50% |"), "{t}");
        assert!(row("| a.cuda-f16 |").ends_with("|  |"), "{t}");
    }

    #[test]
    fn old_result_files_without_a_gpu_field_still_read() {
        let mut v = serde_json::to_value(results("thaw", vec![])).unwrap();
        v["info"].as_object_mut().unwrap().remove("gpu");
        let r: Results = serde_json::from_value(v).unwrap();
        assert_eq!(r.info.gpu, None);
    }

    #[test]
    fn rates() {
        let r = record("a", 0.5, 3e9);
        assert_eq!(r.gflops(), Some(6.0));
        assert_eq!(r.rate(), Some(8.0));
        assert_eq!(r.rate_text(), "8.00 img/s, 6.00 GFLOP/s");
        let r = Record { bytes: 2e9, ..r };
        assert_eq!(r.gbytes_per_s(), Some(4.0));
        assert_eq!(r.rate_text(), "8.00 img/s, 6.00 GFLOP/s, 4.00 GB/s");
    }
}
