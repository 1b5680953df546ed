//! Progress reports for long phases (download, feature extraction,
//! training): an `indicatif` bar with rate and ETA when stderr is a
//! terminal, plain lines (at most one every few seconds, and one at the end)
//! when it is not, so logs of CI and of `2> file` stay readable.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// What a progress count measures, for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown as kB/MB/GB and MB/s).
    Bytes,
    /// Items such as images (shown as counts and items/s).
    Items(&'static str),
}

/// A duration for people: "45 s", "12 min", "1 h 40 min".
pub fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..=89 => format!("{secs} s"),
        90..=5399 => format!("{} min", (secs + 30) / 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600 + 30) / 60),
    }
}

/// Seconds between plain lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// A progress report on stderr, as a bar or as plain lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    unit: Unit,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last_line: Instant,
    finished: bool,
}

impl Progress {
    /// Starts a report for `label` counting up to `total` (if known).
    pub fn new(label: impl Into<String>, total: Option<u64>, unit: Unit) -> Self {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = match (unit, total.is_some()) {
                (Unit::Bytes, true) => {
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
                }
                (Unit::Bytes, false) => "{msg} {spinner} {bytes} {bytes_per_sec}",
                (Unit::Items(_), true) => "{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
                (Unit::Items(_), false) => "{msg} {spinner} {pos} {per_sec}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.clone());
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            label,
            unit,
            total,
            done: 0,
            start: now,
            last_line: now,
            finished: false,
        }
    }

    /// Adds `n` to the count.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => {
                if self.last_line.elapsed() >= PLAIN_EVERY {
                    self.last_line = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// The count so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Ends the report with a final line (count, time, rate).
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("{} (done)", self.line()),
        }
    }

    /// Ends a bar without the final line (the phase failed; its error follows).
    pub fn abandon(&mut self) {
        self.finished = true;
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let amount = |n: u64| match self.unit {
            Unit::Bytes => format!("{:.1} MB", n as f64 / 1e6),
            Unit::Items(what) => format!("{n} {what}"),
        };
        let rate_text = match self.unit {
            Unit::Bytes => format!("{:.1} MB/s", rate / 1e6),
            Unit::Items(what) => format!("{rate:.1} {what}/s"),
        };
        match self.total {
            Some(t) if t > 0 => {
                let eta = if rate > 0.0 {
                    format!(", ETA {:.0} s", (t.saturating_sub(self.done)) as f64 / rate)
                } else {
                    String::new()
                };
                format!(
                    "{}: {} of {} ({:.0}%), {rate_text}, {secs:.1} s{eta}",
                    self.label,
                    amount(self.done),
                    amount(t),
                    100.0 * self.done as f64 / t as f64
                )
            }
            _ => format!(
                "{}: {}, {rate_text}, {secs:.1} s",
                self.label,
                amount(self.done)
            ),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.finished {
            self.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_as_seconds_minutes_or_hours() {
        assert_eq!(duration(14.6), "15 s");
        assert_eq!(duration(89.0), "89 s");
        assert_eq!(duration(90.0), "2 min");
        assert_eq!(duration(40.0 * 60.0 + 10.0), "40 min");
        assert_eq!(duration(6000.0), "1 h 40 min");
        assert_eq!(duration(-1.0), "0 s");
    }
}
