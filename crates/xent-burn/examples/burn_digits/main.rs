//! Softmax regression and a one-hidden-layer MLP on the UCI optical handwritten digits
//! (1797 images of 8×8, `data/digits/`), trained with burn and xent-burn: the same data,
//! split, models and optimizer settings as xent-candle's `digits` example.
//!
//! ```sh
//! cargo run --release -p xent-burn --example burn_digits       # ./digits-training.png
//! cargo run --release -p xent-burn --example burn_digits -- --composed --out plots
//! ```
//!
//! - Data: a seeded stratified 80/20 train/test split; pixels standardized with the
//!   training set's per-pixel mean and standard deviation (the candle example's
//!   `data.rs`, included by path).
//! - Training: burn's `Linear` layers, starting from the candle example's initial
//!   weights (`report::init_layers`), and burn's AdamW with candle's settings (ε 1e-8,
//!   weight decay 1e-4) on mini-batches of 64 rows, on the Flex backend with autodiff; the loss is
//!   `xent_burn::CrossEntropyLoss` (label smoothing 0.1 for the MLP), and
//!   `loss.backward()` takes xent's gradient from the fused forward pass. With
//!   `--composed` the same loss runs as burn's composed ops instead.
//! - Every epoch: train and test loss and accuracy; a progress bar while it runs; PNG
//!   plots of the curves at the end (the candle example's `report.rs`).

#[allow(dead_code)]
#[path = "../../../xent-candle/examples/digits/data.rs"]
mod data;
#[path = "../../../xent-candle/examples/digits/report.rs"]
mod report;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use data::{Digits, SplitMix, FEATURES};
use report::{History, Run};
use xent_burn::{CrossEntropyLoss, CrossEntropyLossConfig};

/// The seed of the split, the initialization and the shuffles (the candle example's).
const SEED: u64 = 1;
const BATCH: usize = 64;

/// A stack of affine layers with ReLU between them.
#[derive(Module, Debug)]
struct Model {
    layers: Vec<Linear>,
    relu: Relu,
}

impl Model {
    /// Layers of the given widths with the candle example's initial weights (drawn as
    /// PyTorch's `nn.Linear` does, from the same seeded stream).
    fn new(widths: &[usize], rng: &mut SplitMix, device: &Device) -> Model {
        let layers = widths
            .windows(2)
            .zip(report::init_layers(widths, rng))
            .map(|(w, (weight, bias))| {
                let mut layer = LinearConfig::new(w[0], w[1]).init(device);
                let weight = Tensor::from_data(TensorData::new(weight, [w[0], w[1]]), device);
                let bias = Tensor::from_data(TensorData::new(bias, [w[1]]), device);
                layer.weight = Param::from_tensor(weight);
                layer.bias = Some(Param::from_tensor(bias));
                layer
            })
            .collect();
        Model {
            layers,
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i + 1 < self.layers.len() {
                h = self.relu.forward(h);
            }
        }
        h
    }
}

/// One data set as tensors.
struct Split {
    x: Tensor<2>,
    y: Tensor<1, Int>,
    n: usize,
}

impl Split {
    fn new(d: &Digits, device: &Device) -> Split {
        let labels: Vec<i64> = d.labels.iter().map(|&l| l as i64).collect();
        Split {
            x: Tensor::from_data(
                TensorData::new(d.features.clone(), [d.len(), FEATURES]),
                device,
            ),
            y: Tensor::from_data(TensorData::new(labels, [d.len()]), device),
            n: d.len(),
        }
    }
}

/// Mean loss and accuracy of `model` on `s`, without autodiff.
fn evaluate(
    model: &Model,
    s: &Split,
    loss: &CrossEntropyLoss,
) -> Result<(f64, f64), xent_burn::Error> {
    let model = model.valid();
    let (x, y) = (s.x.clone().inner(), s.y.clone().inner());
    let logits = model.forward(x);
    let l = loss
        .forward(logits.clone(), y.clone())?
        .into_scalar::<f64>();
    let hits = logits
        .argmax(1)
        .reshape([s.n])
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>();
    Ok((l, hits as f64 / s.n as f64))
}

fn train(
    run: &Run,
    train_set: &Split,
    test_set: &Split,
    composed: bool,
) -> Result<History, Box<dyn std::error::Error>> {
    let device = train_set.x.device();
    let mut rng = SplitMix(SEED ^ run.widths.len() as u64);
    let mut model = Model::new(run.widths, &mut rng, &device);
    // candle's AdamW: ε = 1e-8 (burn's default is 1e-5), weight decay 1e-4.
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(1e-4)
        .init();
    let train_loss = CrossEntropyLossConfig::new()
        .with_label_smoothing(run.label_smoothing)
        .with_composed(composed)
        .init(&device)?;
    let plain = CrossEntropyLossConfig::new().init(&device)?;
    let batches = train_set.n.div_ceil(BATCH);
    let bar = report::progress_bar(run.name, run.epochs * batches);
    let mut order: Vec<usize> = (0..train_set.n).collect();
    let mut history = History::default();
    for epoch in 1..=run.epochs {
        rng.shuffle(&mut order);
        for batch in order.chunks(BATCH) {
            let idx: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [batch.len()]), &device);
            let x = train_set.x.clone().select(0, idx.clone());
            let y = train_set.y.clone().select(0, idx);
            let loss = train_loss.forward(model.forward(x), y)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(run.lr, model, grads);
            bar.inc(1);
        }
        let train = evaluate(&model, train_set, &plain)?;
        let test = evaluate(&model, test_set, &plain)?;
        history.record(&bar, run.name, epoch, train, test);
    }
    bar.finish_and_clear();
    Ok(history)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (out, composed) = report::args("--composed")?;
    let (train_d, test_d) = report::prepare(
        SEED,
        if composed {
            "loss by burn's composed ops (xent_burn, Implementation::Composed)"
        } else {
            "loss and gradient by xent's fused kernel (xent_burn::CrossEntropyLoss on Flex)"
        },
    )?;
    let device = Device::flex().autodiff();
    let (train_set, test_set) = (Split::new(&train_d, &device), Split::new(&test_d, &device));
    let runs = report::runs();
    let mut histories = Vec::new();
    for run in &runs {
        histories.push(train(run, &train_set, &test_set, composed)?);
    }
    let named: Vec<(&str, &History)> = runs.iter().map(|r| r.name).zip(&histories).collect();
    report::finish(&out, &named)
}
