//! The report of the digits examples (shared by xent-candle's and xent-burn's): per-epoch
//! metrics, the progress bar, the final accuracy lines and the PNG plots.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;

use crate::data::{self, Digits, SplitMix, CLASSES, FEATURES};

/// The font the plots are labelled with (DejaVu Sans, subset to ASCII; see
/// `FONT-LICENSE.txt`), embedded so that no system font is needed.
const FONT: &[u8] = include_bytes!("DejaVuSans-subset.ttf");

/// One model to train: its layer widths and optimizer settings.
pub struct Run {
    pub name: &'static str,
    pub widths: &'static [usize],
    pub epochs: usize,
    pub lr: f64,
    /// Label smoothing of the training loss (the reported losses are plain).
    pub label_smoothing: f64,
}

/// The two models both examples train: softmax regression and an MLP with 128 hidden
/// units (label smoothing 0.1), 30 epochs of AdamW each.
pub fn runs() -> [Run; 2] {
    [
        Run {
            name: "softmax",
            widths: &[FEATURES, CLASSES],
            epochs: 30,
            lr: 1e-2,
            label_smoothing: 0.0,
        },
        Run {
            name: "mlp",
            widths: &[FEATURES, 128, CLASSES],
            epochs: 30,
            lr: 3e-3,
            label_smoothing: 0.1,
        },
    ]
}

/// The initial weight (`fan_in × fan_out`, row-major) and bias of each affine layer
/// of the given widths, drawn as PyTorch's `nn.Linear` does: uniform in `±1/√fan_in`,
/// here from the seeded stream, so that both examples start from the same model.
pub fn init_layers(widths: &[usize], rng: &mut SplitMix) -> Vec<(Vec<f32>, Vec<f32>)> {
    widths
        .windows(2)
        .map(|w| {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut init = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let weight = init(fan_in * fan_out);
            (weight, init(fan_out))
        })
        .collect()
}

/// The command line: `--out DIR` (where the plot goes, default the working
/// directory) and the example's one switch `flag`; returns the directory and whether
/// the switch was given.
pub fn args(flag: &str) -> Result<(PathBuf, bool), String> {
    let mut out = PathBuf::from(".");
    let mut on = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            f if f == flag => on = true,
            other => return Err(format!("unknown argument {other} (use --out DIR, {flag})")),
        }
    }
    Ok((out, on))
}

/// The data: the seeded stratified 80/20 split, standardized with the training set's
/// per-pixel mean and deviation; prints what it loaded and `how` the loss runs.
pub fn prepare(seed: u64, how: &str) -> Result<(Digits, Digits), String> {
    let digits = data::load(&data::default_path())?;
    let (train_idx, test_idx) = data::stratified_split(&digits.labels, 0.2, seed);
    let (mut train_d, mut test_d) = (digits.select(&train_idx), digits.select(&test_idx));
    let (mean, std) = data::standardizer(&train_d);
    data::standardize(&mut train_d, &mean, &std);
    data::standardize(&mut test_d, &mean, &std);
    println!(
        "UCI digits: {} images, {} train / {} test (stratified, seed {seed}); {how}",
        digits.len(),
        train_d.len(),
        test_d.len(),
    );
    Ok((train_d, test_d))
}

/// A progress bar over `len` mini-batches, labelled with the model's name.
pub fn progress_bar(name: &str, len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:32}] {pos}/{len} batches {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// Per-epoch metrics of one model.
#[derive(Default)]
pub struct History {
    pub train_loss: Vec<f64>,
    pub test_loss: Vec<f64>,
    pub train_acc: Vec<f64>,
    pub test_acc: Vec<f64>,
}

impl History {
    /// Records one epoch's `(loss, accuracy)` on the training and test sets and
    /// prints them above the progress bar.
    pub fn record(
        &mut self,
        bar: &ProgressBar,
        name: &str,
        epoch: usize,
        (train_loss, train_acc): (f64, f64),
        (test_loss, test_acc): (f64, f64),
    ) {
        bar.suspend(|| {
            println!(
                "{name:>8} epoch {epoch:>3}  train loss {train_loss:.4} acc {:6.2}%   test loss {test_loss:.4} acc {:6.2}%",
                100.0 * train_acc,
                100.0 * test_acc
            )
        });
        bar.set_message(format!("test acc {:.2}%", 100.0 * test_acc));
        self.train_loss.push(train_loss);
        self.test_loss.push(test_loss);
        self.train_acc.push(train_acc);
        self.test_acc.push(test_acc);
    }
}

/// Prints each model's `<model>: final test accuracy NN.NN% …` line and writes the
/// plots to `out/digits-training.png`.
pub fn finish(out: &Path, runs: &[(&str, &History)]) -> Result<(), Box<dyn std::error::Error>> {
    for (name, h) in runs {
        println!(
            "{:>8}: final test accuracy {:.2}% (best {:.2}%), test loss {:.4}",
            name,
            100.0 * h.test_acc.last().unwrap_or(&0.0),
            100.0 * h.test_acc.iter().cloned().fold(0.0, f64::max),
            h.test_loss.last().unwrap_or(&f64::NAN)
        );
    }
    std::fs::create_dir_all(out)?;
    let path = out.join("digits-training.png");
    plot(&path, runs)?;
    let shown = std::fs::canonicalize(&path).unwrap_or(path);
    println!("plots: {}", shown.display());
    Ok(())
}

fn plot(
    path: &Path,
    runs: &[(&str, &History)],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the embedded font does not load")?;
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    let epochs = runs
        .iter()
        .map(|(_, h)| h.train_loss.len())
        .max()
        .unwrap_or(1);
    for (area, title, is_loss) in [
        (&left, "cross-entropy loss", true),
        (&right, "accuracy (%)", false),
    ] {
        let series = |h: &History, test: bool| -> Vec<(f64, f64)> {
            let v = match (is_loss, test) {
                (true, false) => &h.train_loss,
                (true, true) => &h.test_loss,
                (false, false) => &h.train_acc,
                (false, true) => &h.test_acc,
            };
            let scale = if is_loss { 1.0 } else { 100.0 };
            v.iter()
                .enumerate()
                .map(|(i, &y)| ((i + 1) as f64, y * scale))
                .collect()
        };
        let all: Vec<f64> = runs
            .iter()
            .flat_map(|(_, h)| series(h, false).into_iter().chain(series(h, true)))
            .map(|(_, y)| y)
            .collect();
        let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                1f64..epochs as f64,
                if is_loss {
                    lo * 0.9..hi * 1.1
                } else {
                    lo.min(90.0)..100.5
                },
            )?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .label_style(("sans-serif", 14))
            .draw()?;
        for ((name, h), color) in runs.iter().zip(colors) {
            for test in [false, true] {
                let label = format!("{name} {}", if test { "test" } else { "train" });
                let style = if test {
                    color.stroke_width(2)
                } else {
                    color.mix(0.45).stroke_width(2)
                };
                chart
                    .draw_series(LineSeries::new(series(h, test), style))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        chart
            .configure_series_labels()
            .position(if is_loss {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            })
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
