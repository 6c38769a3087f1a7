//! One validated plan per call: which xent loss runs, with which options, on inputs of
//! which shapes. It is plain data (no tensor, no device), so it travels through burn's
//! dispatch into any backend and lives in the autodiff graph until the backward pass.

use xent::Reduction;

/// A loss call, resolved once by the public functions of this crate and read by the
/// kernels ([`crate::XentKernels`]) and by the composed fallback.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) loss: LossPlan,
    /// The shape of each float input, in the order the loss takes them.
    pub(crate) shapes: Vec<Vec<usize>>,
}

/// The loss and its options. Class weights and `pos_weight` are read once into `f64`
/// (as xent-candle does); the kernels round them to the compute type.
#[derive(Debug, Clone)]
pub(crate) enum LossPlan {
    /// Inputs: logits, then the probability targets when `probabilities`.
    CrossEntropy {
        opts: xent::CrossEntropyOptions<'static, f64>,
        weight: Option<Vec<f64>>,
        probabilities: bool,
    },
    /// Inputs: hidden states `h` (N×D), classifier weight `W` (V×D), optional bias `b` (V).
    Linear {
        opts: xent::LinearCrossEntropyOptions<'static, f64>,
        weight: Option<Vec<f64>>,
    },
    /// Inputs: probabilities, targets.
    Binary {
        reduction: Reduction,
        weight: Option<Vec<f64>>,
    },
    /// Inputs: logits, targets.
    BinaryWithLogits {
        reduction: Reduction,
        weight: Option<Vec<f64>>,
        pos_weight: Option<Vec<f64>>,
    },
    /// Inputs: log-probabilities, targets.
    KlDiv(xent::KlDivOptions),
    /// Inputs: the two distributions (probabilities, or logits when `logits`).
    JsDiv {
        opts: xent::JsDivOptions,
        logits: bool,
    },
}

impl Plan {
    /// Whether the loss is one value (`mean`/`sum`/`batchmean`) rather than one per row
    /// or element. A scalar loss's gradient is computed in the forward pass and scaled
    /// by the upstream gradient; a per-row loss's gradient needs the upstream gradient
    /// inside the kernel (it weighs each row), so it is computed in the backward pass.
    pub(crate) fn scalar(&self) -> bool {
        let r = match &self.loss {
            LossPlan::CrossEntropy { opts, .. } => opts.reduction,
            LossPlan::Linear { opts, .. } => opts.cross_entropy.reduction,
            LossPlan::Binary { reduction, .. } | LossPlan::BinaryWithLogits { reduction, .. } => {
                *reduction
            }
            LossPlan::KlDiv(o) => return o.reduction != xent::KlReduction::None,
            LossPlan::JsDiv { opts, .. } => opts.reduction,
        };
        r != Reduction::None
    }

    /// Whether the loss takes class indices.
    pub(crate) fn indices(&self) -> bool {
        match &self.loss {
            LossPlan::CrossEntropy { probabilities, .. } => !probabilities,
            LossPlan::Linear { .. } => true,
            _ => false,
        }
    }

    /// Which inputs xent returns a gradient for.
    pub(crate) fn differentiable(&self, input: usize) -> bool {
        match &self.loss {
            // Probability targets of cross-entropy and the targets of the binary losses
            // get no gradient from xent (PyTorch gives none either for `target`).
            LossPlan::CrossEntropy { .. } | LossPlan::Binary { .. } => input == 0,
            LossPlan::BinaryWithLogits { .. } => input == 0,
            LossPlan::Linear { .. } | LossPlan::KlDiv(_) | LossPlan::JsDiv { .. } => true,
        }
    }

    /// The shape of the per-row (or per-element) loss of a `none` reduction, flattened
    /// to one dimension, or `[1]` for a scalar loss.
    pub(crate) fn loss_len(&self) -> usize {
        if self.scalar() {
            return 1;
        }
        let s = &self.shapes[0];
        match &self.loss {
            // Classes on dim 1 (dim 0 of an unbatched `(C,)` input), as xent's layout.
            LossPlan::CrossEntropy { .. } | LossPlan::JsDiv { .. } => match s.len() {
                0 | 1 => 1,
                _ => s[0] * s[2..].iter().product::<usize>(),
            },
            LossPlan::Linear { .. } => s.first().copied().unwrap_or(0),
            _ => s.iter().product(),
        }
    }
}
