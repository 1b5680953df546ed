//! The paper `train` writes (`NAME.report.html`, `NAME.report.md`) and
//! `trainer report` rebuilds, on the small seeded MobileNet at 32 px.
//!
//! The numbers are parsed out of the rendered HTML and Markdown (the
//! headline test accuracy, per-class accuracy, confusion counts, the most
//! confused pair, the best validation epoch) and recomputed here from
//! `predictions.csv` and `metrics.csv` with this file's own parsers, never
//! the report's code. Editing one prediction must make the old report
//! disagree, and the report rebuilt from the edited file agree again.
//! The browser check (headless Chromium) is in `report_browser.rs`.

mod common;

use common::{png_folder, random_cifar, run_trainer, s, small_weights, TempDir, SMALL_MODEL};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Two runs trained once for every test here: `a` (defaults, with its
/// report) and `b` (`--flip --no-report`), on one random CIFAR folder.
fn runs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-runs");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (w, data) = (small_weights(&d, 8), random_cifar(&d, 64, 40));
        for (name, extra) in [("a", &[][..]), ("b", &["--flip", "--no-report"][..])] {
            let out = d.join(format!("{name}.safetensors"));
            let mut args = vec!["train"];
            args.extend(SMALL_MODEL);
            args.extend(["--data", s(&data), "--weights", s(&w), "--out", s(&out)]);
            args.extend(["--epochs", "3", "--seed", "4", "--standardize"]);
            args.extend(extra);
            let (code, _, err) = run_trainer(&args, &d.join("cache"));
            assert_eq!(code, Some(0), "{err}");
        }
        d
    })
}

/// Copies run `name`'s three files into `dir`; returns the record's path.
fn copy_run(name: &str, dir: &Path) -> PathBuf {
    for suffix in ["run.json", "predictions.csv", "metrics.csv"] {
        let file = format!("{name}.{suffix}");
        std::fs::copy(runs().join(&file), dir.join(&file)).unwrap();
    }
    dir.join(format!("{name}.run.json"))
}

/// `trainer report` with `args`; (status, stderr).
fn report(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["report"];
    all.extend(args);
    let (code, _, err) = run_trainer(&all, &runs().join("cache"));
    (code, err)
}

// ---- the recount: the run's files, read here -------------------------------

/// What the files say: classes, `confusion[true][predicted]`, best epoch.
struct Truth {
    classes: Vec<String>,
    confusion: Vec<Vec<usize>>,
    best_val: f64,
    best_epoch: usize,
}

impl Truth {
    fn read(dir: &Path, name: &str) -> Truth {
        let csv = std::fs::read_to_string(dir.join(format!("{name}.predictions.csv"))).unwrap();
        let mut lines = csv.lines();
        let classes: Vec<String> = common::csv_fields(lines.next().unwrap())[4..]
            .iter()
            .map(|h| h[2..].to_string())
            .collect();
        let k = classes.len();
        let mut confusion = vec![vec![0; k]; k];
        for line in lines {
            let f = common::csv_fields(line);
            let at = |name: &str| classes.iter().position(|c| c == name).unwrap();
            confusion[at(&f[2])][at(&f[3])] += 1;
        }
        let metrics = std::fs::read_to_string(dir.join(format!("{name}.metrics.csv"))).unwrap();
        let (mut best_val, mut best_epoch) = (-1.0, 0);
        for line in metrics.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let v: f64 = f[5].parse().unwrap();
            if v > best_val {
                (best_val, best_epoch) = (v, f[0].parse().unwrap());
            }
        }
        Truth {
            classes,
            confusion,
            best_val,
            best_epoch,
        }
    }

    fn right(&self) -> usize {
        (0..self.classes.len()).map(|k| self.confusion[k][k]).sum()
    }

    fn images(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// The most confused pair: (true, predicted, count), the first in
    /// class order on a tie.
    fn top_pair(&self) -> (String, String, usize) {
        let mut top = (0, 0, 0);
        for (t, row) in self.confusion.iter().enumerate() {
            for (p, &c) in row.iter().enumerate() {
                if t != p && c > top.2 {
                    top = (t, p, c);
                }
            }
        }
        let c = &self.classes;
        (c[top.0].clone(), c[top.1].clone(), top.2)
    }
}

/// `100 c / n` as the paper must print it (two decimals), checked as a
/// number: within half a unit of the last place.
fn is_pct(text: &str, c: usize, n: usize) -> bool {
    let v: f64 = match text.trim().trim_end_matches('%').parse() {
        Ok(v) => v,
        Err(_) => return false,
    };
    text.trim().ends_with('%') && (v - 100.0 * c as f64 / n as f64).abs() <= 0.005 + 1e-9
}

// ---- the paper, parsed --------------------------------------------------------

/// A table's body rows, by the HTML id (HTML) or caption words (Markdown).
type Rows = Vec<Vec<String>>;

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The rows of `<table id="id">` in `html`.
fn html_table(html: &str, id: &str) -> Option<Rows> {
    let start = html.find(&format!("<table id=\"{id}\">"))?;
    let table = &html[start..start + html[start..].find("</table>")?];
    let body = &table[table.find("<tbody>")?..];
    Some(
        body.split("<tr>")
            .skip(1)
            .map(|row| {
                row.split("<td>")
                    .skip(1)
                    .map(|c| unescape_html(&c[..c.find("</td>").unwrap()]))
                    .collect()
            })
            .collect(),
    )
}

/// The rows of the Markdown table whose caption line holds `caption`.
fn md_table(md: &str, caption: &str) -> Option<Rows> {
    let mut lines = md
        .lines()
        .skip_while(|l| !(l.starts_with("**Table") && l.contains(caption)));
    lines.next()?;
    let rows = lines
        .skip_while(|l| l.is_empty())
        .skip(2) // header and separator
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            // Split on the `|` not escaped by a backslash, then unescape.
            let (mut cells, mut cur, mut escaped) = (Vec::new(), String::new(), false);
            for c in l.trim().trim_matches('|').chars() {
                match (c, escaped) {
                    ('\\', false) => escaped = true,
                    ('|', false) => cells.push(std::mem::take(&mut cur).trim().to_string()),
                    _ => {
                        cur.push(c);
                        escaped = false;
                    }
                }
            }
            cells.push(cur.trim().to_string());
            cells
        })
        .collect();
    Some(rows)
}

/// The headline: the first "test accuracy of X% (C of N)".
fn headline(text: &str) -> Option<(String, usize, usize)> {
    let rest = &text[text.find("test accuracy of ")? + "test accuracy of ".len()..];
    let (pct, rest) = rest.split_once(" (")?;
    let (c, rest) = rest.split_once(" of ")?;
    let n = rest.split(')').next()?;
    Some((pct.to_string(), c.parse().ok()?, n.parse().ok()?))
}

/// Checks every number the paper `text` shows (HTML or Markdown, read with
/// `table`) against `truth`; Err names the first disagreement.
fn agrees(
    text: &str,
    table: impl Fn(&str, &str) -> Option<Rows>,
    truth: &Truth,
) -> Result<(), String> {
    let (right, n) = (truth.right(), truth.images());
    let (pct, c, m) = headline(text).ok_or("no headline test accuracy")?;
    if (c, m) != (right, n) || !is_pct(&pct, right, n) {
        return Err(format!(
            "headline {pct} ({c} of {m}); the files: {right} of {n}"
        ));
    }
    let rows = table("per-class", "per class").ok_or("no per-class table")?;
    if rows.len() != truth.classes.len() {
        return Err(format!("{} per-class rows", rows.len()));
    }
    for (k, row) in rows.iter().enumerate() {
        let (r, n): (usize, usize) = (truth.confusion[k][k], truth.confusion[k].iter().sum());
        let ok = row[0] == truth.classes[k]
            && row[1] == r.to_string()
            && row[2] == n.to_string()
            && is_pct(&row[3], r, n);
        if !ok {
            return Err(format!("per-class row {row:?}; the files: {r} of {n}"));
        }
    }
    let rows = table("confusion", "Confusion matrix").ok_or("no confusion table")?;
    for (k, row) in rows.iter().enumerate() {
        let counts: Vec<String> = truth.confusion[k].iter().map(|c| c.to_string()).collect();
        if row[0] != truth.classes[k] || row[1..] != counts[..] {
            return Err(format!("confusion row {row:?}; the files: {counts:?}"));
        }
    }
    let rows = table("confused-pairs", "most confused").ok_or("no confused pairs")?;
    let (t, p, c) = truth.top_pair();
    if rows[0][..3] != [t.clone(), p.clone(), c.to_string()] {
        return Err(format!(
            "top confused pair {:?}; the files: {t} as {p}, {c}",
            rows[0]
        ));
    }
    let rows = table("accuracy", "Accuracy of the saved model").ok_or("no accuracy table")?;
    let best = format!(
        "{:.2}% (epoch {})",
        100.0 * truth.best_val,
        truth.best_epoch
    );
    if rows[0][1] != best {
        return Err(format!(
            "best validation {:?}; the metrics: {best}",
            rows[0][1]
        ));
    }
    Ok(())
}

fn html_agrees(html: &str, truth: &Truth) -> Result<(), String> {
    agrees(html, |id, _| html_table(html, id), truth)
}

fn md_agrees(md: &str, truth: &Truth) -> Result<(), String> {
    agrees(md, |_, caption| md_table(md, caption), truth)
}

/// Row 1 of the predictions file with another predicted class: right
/// becomes wrong, or wrong becomes right (its probabilities swapped so the
/// argmax follows the edit).
fn edit_one_prediction(path: &Path) {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let header = common::csv_fields(&lines[0]);
    let mut f = common::csv_fields(&lines[1]);
    let col = |name: &str| 4 + header[4..].iter().position(|h| h[2..] == *name).unwrap();
    let (truth, predicted) = (col(&f[2]), col(&f[3]));
    let other = if truth == predicted {
        4 + (truth - 3) % (header.len() - 4)
    } else {
        truth
    };
    f.swap(predicted, other);
    f[3] = header[other][2..].to_string();
    lines[1] = f.join(",");
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn the_papers_numbers_are_the_run_files_numbers() {
    let d = runs();
    let (html, md) = (read(d.join("a.report.html")), read(d.join("a.report.md")));
    let truth = Truth::read(d, "a");
    html_agrees(&html, &truth).unwrap_or_else(|e| panic!("HTML: {e}"));
    md_agrees(&md, &truth).unwrap_or_else(|e| panic!("Markdown: {e}"));
    // The parts the issue lists, in order (the figures need a font).
    let fonts = !html.contains("no TrueType font");
    if !fonts {
        common::skipped("no TrueType font: the report's figures were not drawn");
    }
    let parts = [
        "<h1>",
        "id=\"samples\"",
        ">Abstract<",
        ">1. Introduction<",
        ">2. Materials and methods<",
        ">3. Results<",
        "id=\"curves\"",
        "id=\"confusion\"",
        ">4. Discussion<",
        "id=\"mistakes\"",
        ">References<",
    ];
    let mut at = 0;
    for part in parts.into_iter().filter(|p| fonts || !p.starts_with("id=")) {
        let found = html[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part} missing or out of order"));
        at += found;
    }
    assert!(
        html.contains("MobileNets: Efficient Convolutional"),
        "the backbone's paper"
    );
    assert!(html.contains("Learning Multiple Layers of Features from Tiny Images"));
    assert!(
        !html.contains("src=\"http"),
        "the HTML must not load anything"
    );
    // The Markdown's figures are files beside it.
    for id in ["samples", "curves", "confusion", "mistakes"]
        .into_iter()
        .filter(|_| fonts)
    {
        let png = format!("a.report.{id}.png");
        assert!(md.contains(&format!("]({png})")), "{png} not linked");
        assert!(image::open(d.join(&png)).is_ok(), "{png} is not a PNG");
    }
    // `--no-report`: no paper for b.
    assert!(!d.join("b.report.html").exists() && !d.join("b.report.md").exists());
}

#[test]
fn editing_one_prediction_moves_the_rebuilt_paper_and_not_the_old_one() {
    let dir = TempDir::new("report-edit");
    let record = copy_run("a", dir.path());
    let (code, err) = report(&[s(&record)]);
    assert_eq!(code, Some(0), "{err}");
    let html = dir.path().join("a.report.html");
    let (old_html, old_md) = (read(&html), read(dir.path().join("a.report.md")));
    html_agrees(&old_html, &Truth::read(dir.path(), "a")).unwrap();

    edit_one_prediction(&dir.path().join("a.predictions.csv"));
    let edited = Truth::read(dir.path(), "a");
    let e = html_agrees(&old_html, &edited).expect_err("the old HTML matches an edited file");
    println!("old HTML after the edit: {e}");
    md_agrees(&old_md, &edited).expect_err("the old Markdown matches an edited file");

    // Rebuilt from the run prefix: it follows the edit, and says the record disagrees.
    let prefix = dir.path().join("a");
    let (code, err) = report(&[s(&prefix)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("changed after the run"), "{err}");
    let new_html = read(&html);
    html_agrees(&new_html, &edited).unwrap_or_else(|e| panic!("rebuilt HTML: {e}"));
    md_agrees(&read(dir.path().join("a.report.md")), &edited).unwrap();
    assert!(new_html.contains("changed after the run"));
}

#[test]
fn two_runs_make_one_comparative_paper() {
    let dir = TempDir::new("report-compare");
    let (a, b) = (copy_run("a", dir.path()), copy_run("b", dir.path()));
    let out = dir.path().join("cmp.report.html");
    let (code, err) = report(&[s(&a), s(&b), "--out", s(&out)]);
    assert_eq!(code, Some(0), "{err}");
    let html = read(&out);
    let truths = [Truth::read(dir.path(), "a"), Truth::read(dir.path(), "b")];
    let rows = html_table(&html, "runs-accuracy").expect("the runs' table");
    for (row, (name, t)) in rows.iter().zip(["a", "b"].iter().zip(&truths)) {
        let want = format!("({} of {})", t.right(), t.images());
        assert_eq!(row[0], *name);
        assert!(
            row[2].ends_with(&want)
                && is_pct(row[2].split(' ').next().unwrap(), t.right(), t.images()),
            "{row:?}"
        );
    }
    // The runs differ in --flip alone: its effect, from the two files.
    let changes = html_table(&html, "changes").expect("the one-change table");
    let diff =
        100.0 * (truths[1].right() as f64 - truths[0].right() as f64) / truths[0].images() as f64;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0][..3], ["flip", "false (a)", "true (b)"]);
    let printed: f64 = changes[0][3].parse().unwrap();
    assert!(
        (printed - diff).abs() <= 0.005 + 1e-9,
        "{changes:?} vs {diff}"
    );
    let md = read(dir.path().join("cmp.report.md"));
    assert!(md_table(&md, "One change at a time").is_some_and(|r| r == changes));
}

#[test]
fn missing_test_images_leave_their_figures_out_with_a_note() {
    let dir = TempDir::new("report-no-data");
    let record = copy_run("a", dir.path());
    let text = read(&record).replace("report-runs/cifar", "report-runs/moved-away");
    std::fs::write(&record, text).unwrap();
    let (code, err) = report(&[s(&record)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no longer at"), "{err}");
    let html = read(dir.path().join("a.report.html"));
    assert!(!html.contains("id=\"samples\"") && !html.contains("id=\"mistakes\""));
    assert!(
        html.contains("is left out: the test images are no longer at"),
        "no note"
    );
    html_agrees(&html, &Truth::read(dir.path(), "a")).unwrap();
}

#[test]
fn bad_report_commands_are_refused_with_what_to_do() {
    let dir = TempDir::new("report-refused");
    let d = dir.path();
    let record = copy_run("a", d);
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (vec![s(&d.join("nope")).into()], &["no run record", "HINT"]),
        (vec![s(&record).into(), s(&record).into()], &["needs --out"]),
        (
            vec![
                s(&record).into(),
                "--out".into(),
                s(&d.join("x.txt")).into(),
            ],
            &["must end in .html"],
        ),
        (
            vec![
                s(&record).into(),
                "--out".into(),
                s(&runs().join("cifar/p.html")).into(),
            ],
            &["lies inside", "dataset", "nothing was written"],
        ),
    ];
    for (args, words) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = report(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: the message lacks {w:?}: {err}");
        }
    }
    std::fs::write(&record, r#"{"schema": 99, "status": "finished"}"#).unwrap();
    let (code, err) = report(&[s(&record)]);
    assert_eq!(code, Some(1));
    assert!(err.contains("newer than this thaw reads"), "{err}");
    assert!(
        !d.join("a.report.html").exists(),
        "a refused command wrote a report"
    );
}

#[test]
fn an_image_folder_runs_pictures_are_its_files() {
    let dir = TempDir::new("report-folder");
    let d = dir.path();
    let w = small_weights(d, 8);
    let data = png_folder(d, "pngs", &["train", "test"], &["cat", "dog"]);
    let out = d.join("m.safetensors");
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    args.extend(["--data", s(&data), "--weights", s(&w), "--out", s(&out)]);
    args.extend(["--epochs", "2", "--standardize"]);
    let (code, _, err) = run_trainer(&args, &d.join("cache"));
    assert_eq!(code, Some(0), "{err}");
    let html = read(d.join("m.report.html"));
    html_agrees(&html, &Truth::read(d, "m")).unwrap();
    if html.contains("no TrueType font") {
        common::skipped("the image-folder figures: no TrueType font");
        return;
    }
    assert!(html.contains("id=\"samples\""), "no picture at the top");
    assert!(!html.contains("is left out"), "a figure was left out");
    // The picture is read from the files: one gone, the rebuilt paper says which.
    std::fs::remove_file(data.join("test/dog/1.png")).unwrap();
    let (code, err) = report(&[s(&d.join("m"))]);
    assert_eq!(code, Some(0), "{err}");
    let html = read(d.join("m.report.html"));
    assert!(
        html.contains("is left out") && html.contains("1.png"),
        "no note naming the file"
    );
}

#[test]
fn a_schema_1_record_still_makes_the_same_paper() {
    let dir = TempDir::new("report-schema-1");
    let record = copy_run("a", dir.path());
    let mut json: serde_json::Value = serde_json::from_str(&read(&record)).unwrap();
    json["schema"] = 1.into();
    for (part, key) in [
        ("dataset", "path"),
        ("dataset", "format"),
        ("model", "preprocessing"),
    ] {
        json[part].as_object_mut().unwrap().remove(key);
    }
    json["machine"].as_object_mut().unwrap().remove("os");
    std::fs::write(&record, serde_json::to_string(&json).unwrap()).unwrap();
    let (code, err) = report(&[s(&record)]);
    assert_eq!(code, Some(0), "{err}");
    let html = read(dir.path().join("a.report.html"));
    html_agrees(&html, &Truth::read(dir.path(), "a")).unwrap();
    // The test images are found from --data as given, the preprocessing from the registry.
    assert!(
        !html.contains("is left out: the test images"),
        "the images were not found"
    );
    assert!(
        html.contains("pixels scaled to [-1, 1]"),
        "no preprocessing"
    );
}
