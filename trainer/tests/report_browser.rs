//! The paper in a real browser: headless Chromium (Debian's `chromium`;
//! `.ci/run` installs it where it can) opens the HTML `train` wrote, offline.
//!
//! - Through the DOM: a copy of the page gets a script that, on `load`,
//!   writes every image's `naturalWidth` into an attribute of `<body>`;
//!   `--dump-dom` prints the page after it ran, and every width must be
//!   above 0 (each embedded PNG decoded). A copy with one broken image
//!   must fail that check.
//! - A screenshot must not be blank: many colours, and the luminance
//!   varies. A blank page must fail that check.
//!
//! Without Chromium (`chromium` or `chromium-browser` on the PATH) the test
//! prints SKIPPED and passes.

mod common;

use common::{random_cifar, run_trainer, s, skipped, small_weights, TempDir, SMALL_MODEL};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium's program, if installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `flags`; its stdout (through a
/// file: a dumped DOM is larger than a pipe holds). Fails after 90 s.
fn headless(chromium: &Path, profile: &Path, flags: &[&str], page: &Path) -> String {
    let url = format!("file://{}", page.display());
    let stdout = page.with_extension("stdout");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(&url)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(&stdout).unwrap()
}

/// The script that records each image's natural width once the page loaded.
const RECORD_WIDTHS: &str = "<script>window.addEventListener('load', function () {\
    var w = Array.prototype.map.call(document.images, function (i) { return i.naturalWidth; });\
    document.body.setAttribute('data-image-widths', w.join(','));});</script>";

/// The natural widths Chromium saw for the images of `html` (written to a
/// copy at `page` with [`RECORD_WIDTHS`]).
fn image_widths(chromium: &Path, profile: &Path, html: &str, page: &Path) -> Vec<u32> {
    std::fs::write(
        page,
        html.replace("</body>", &format!("{RECORD_WIDTHS}</body>")),
    )
    .unwrap();
    let dom = headless(
        chromium,
        profile,
        &["--virtual-time-budget=5000", "--dump-dom"],
        page,
    );
    let attr = "data-image-widths=\"";
    let Some(at) = dom.find(attr) else {
        panic!(
            "the script did not run: no {attr} in the DOM:\n{}",
            &dom[..dom.len().min(2000)]
        );
    };
    let list = &dom[at + attr.len()..];
    let list = &list[..list.find('"').unwrap()];
    list.split(',')
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// Whether a screenshot shows a page: more than 16 colours and a
/// luminance standard deviation above 10 (of 255).
fn shows_something(png: &Path) -> Result<(), String> {
    let img = image::open(png)
        .map_err(|e| format!("{}: {e}", png.display()))?
        .to_rgb8();
    let mut colours = std::collections::HashSet::new();
    let (mut sum, mut sq) = (0f64, 0f64);
    for p in img.pixels() {
        colours.insert(p.0);
        let y = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
        sum += y;
        sq += y * y;
    }
    let n = (img.width() * img.height()) as f64;
    let sd = (sq / n - (sum / n).powi(2)).max(0.0).sqrt();
    match colours.len() > 16 && sd > 10.0 {
        true => Ok(()),
        false => Err(format!(
            "{} colours, luminance sd {sd:.2}: blank",
            colours.len()
        )),
    }
}

#[test]
fn the_paper_opens_in_a_browser_with_every_image() {
    let Some(chromium) = chromium() else {
        skipped("the report's browser test: no chromium or chromium-browser on the PATH");
        return;
    };
    let dir = TempDir::new("report-browser");
    let d = dir.path();
    let (w, data, out) = (
        small_weights(d, 8),
        random_cifar(d, 64, 40),
        d.join("m.safetensors"),
    );
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    args.extend([
        "--data",
        s(&data),
        "--weights",
        s(&w),
        "--out",
        s(&out),
        "--epochs",
        "2",
    ]);
    args.push("--standardize");
    let (code, _, err) = run_trainer(&args, &d.join("cache"));
    assert_eq!(code, Some(0), "{err}");
    let html = std::fs::read_to_string(d.join("m.report.html")).unwrap();
    let profile = d.join("chromium-profile");

    let images = html.matches("<img ").count();
    if images == 0 {
        assert!(html.contains("no TrueType font"), "no image and no reason");
        skipped("the report's image check: no TrueType font, so no figure was drawn");
    }
    let widths = image_widths(&chromium, &profile, &html, &d.join("page.html"));
    println!("natural widths: {widths:?}");
    assert_eq!(widths.len(), images, "the DOM has another number of images");
    assert!(
        widths.iter().all(|&w| w > 0),
        "an image did not load: {widths:?}"
    );
    // The check can fail: one broken image in a copy.
    let broken = html.replacen(
        "</article>",
        "<img src=\"data:image/png;base64,iVBORw0KGgoAAAA=\" alt=\"broken\"></article>",
        1,
    );
    let widths = image_widths(&chromium, &profile, &broken, &d.join("broken.html"));
    assert_eq!(widths.last(), Some(&0), "a broken image passed: {widths:?}");

    let shot = d.join("shot.png");
    let flag = format!("--screenshot={}", shot.display());
    let page = d.join("m.report.html");
    headless(
        &chromium,
        &profile,
        &[&flag, "--window-size=1000,1400", "--hide-scrollbars"],
        &page,
    );
    shows_something(&shot).unwrap_or_else(|e| panic!("the screenshot of the paper: {e}"));
    // The check can fail: a blank page.
    let blank = d.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let _ = std::fs::remove_file(&shot);
    headless(
        &chromium,
        &profile,
        &[&flag, "--window-size=1000,1400"],
        &blank,
    );
    assert!(
        shows_something(&shot).is_err(),
        "a blank page passed as a page"
    );
}
