//! Class weights for imbalanced data, from label counts, ready to pass as the `weight`
//! of [`cross_entropy`](crate::cross_entropy) / [`nll_loss`](crate::nll_loss) or the
//! `pos_weight` of
//! [`binary_cross_entropy_with_logits`](crate::binary_cross_entropy_with_logits).
//!
//! Classes that never occur get weight 0 (their weight never multiplies a class-index
//! loss term, and no division by zero happens); a class without positives gets
//! `pos_weight` 1 (no reweighting). See each function.

use crate::alloc::try_vec;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::indices::ClassIndices;
use crate::ops::elementwise::{check_shape, check_unit_interval};
use crate::reduce::CompensatedSum;

/// How class weights are derived from the count `n_c` of each class.
///
/// ```
/// use xent::ClassWeighting;
/// assert_eq!(ClassWeighting::default(), ClassWeighting::InverseFrequency);
/// let cui = ClassWeighting::EffectiveNumber { beta: 0.999 };
/// assert_ne!(cui, ClassWeighting::InverseFrequency);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum ClassWeighting {
    /// `w_c = N/(C·n_c)` with `N = Σ_c n_c` (scikit-learn's "balanced"): a balanced
    /// data set gets all weights 1.
    #[default]
    InverseFrequency,
    /// The "effective number of samples" of Cui et al. (CVPR 2019):
    /// `w_c ∝ (1 − β)/(1 − β^{n_c})`, normalised so that the weights sum to C.
    /// `β = 0` gives equal weights; `β → 1` tends to inverse frequency.
    EffectiveNumber {
        /// `β ∈ [0, 1)`; the paper uses 0.9 … 0.9999.
        beta: f64,
    },
}

/// Options of [`class_weights`]: the weighting scheme and the `ignore_index` whose
/// targets are not counted.
///
/// ```
/// use xent::{ClassWeightOptions, ClassWeighting};
/// let opts = ClassWeightOptions::default()
///     .scheme(ClassWeighting::EffectiveNumber { beta: 0.99 })
///     .ignore_index(255);
/// assert_eq!(opts.ignore_index, 255);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ClassWeightOptions {
    /// The weighting scheme (default inverse frequency).
    pub scheme: ClassWeighting,
    /// Targets equal to this are not counted (default −100, as the losses').
    pub ignore_index: i64,
}

impl Default for ClassWeightOptions {
    fn default() -> Self {
        ClassWeightOptions {
            scheme: ClassWeighting::InverseFrequency,
            ignore_index: crate::options::DEFAULT_IGNORE_INDEX,
        }
    }
}

impl ClassWeightOptions {
    /// Sets the weighting scheme.
    pub fn scheme(mut self, scheme: ClassWeighting) -> Self {
        self.scheme = scheme;
        self
    }
    /// Sets `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
}

/// Counts class-index targets: `n_c = #{i : y_i = c}` for `c ∈ [0, classes)`, skipping
/// targets equal to `ignore_index`.
///
/// # Errors
/// [`Error::InvalidArgument`] for `classes = 0`; [`Error::TargetOutOfBounds`] naming
/// the first target outside `[0, classes)` (that is not `ignore_index`) and its index;
/// [`Error::Allocation`] when `classes` counts do not fit in memory.
///
/// ```
/// let counts = xent::class_counts(&[0u8, 2, 2, 1, 2][..], 4, -100)?;
/// assert_eq!(counts, [1, 1, 3, 0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn class_counts<'t>(
    target: impl Into<ClassIndices<'t>>,
    classes: usize,
    ignore_index: i64,
) -> Result<Vec<u64>> {
    let target = target.into();
    if classes == 0 {
        return Err(Error::InvalidArgument {
            name: "classes",
            value: "0".to_string(),
            expected: "at least 1 class",
        });
    }
    let mut counts = try_vec("class counts", &[classes], 0u64)?;
    for i in 0..target.len() {
        let t = target.get(i);
        if t == ignore_index as i128 {
            continue;
        }
        if !(0..classes as i128).contains(&t) {
            return Err(Error::TargetOutOfBounds {
                target: t,
                index: vec![i],
                classes,
            });
        }
        counts[t as usize] += 1;
    }
    Ok(counts)
}

/// Class weights from per-class counts `n_c` (`C = counts.len()`), by `scheme`:
/// inverse frequency `N/(C·n_c)`, or effective number `(1 − β)/(1 − β^{n_c})`
/// normalised to sum to C.
///
/// A class with `n_c = 0` gets weight 0, never a division by zero; the normalisation
/// of the effective-number weights runs over the classes present, so the weights still
/// sum to C (all 0 when no class is present). `1 − β^{n}` is evaluated as
/// `−expm1(n·ln β)`, accurate for `β` near 1 and large `n`.
///
/// # Errors
/// [`Error::InvalidArgument`] for empty `counts` or a `β` outside `[0, 1)` (NaN
/// included).
///
/// ```
/// use xent::{class_weights_from_counts, ClassWeighting};
/// let w: Vec<f64> = class_weights_from_counts(&[10, 30, 0], ClassWeighting::InverseFrequency)?;
/// assert_eq!(w, [40.0 / 30.0, 40.0 / 90.0, 0.0]);
/// let e: Vec<f64> = class_weights_from_counts(&[10, 30],
///     ClassWeighting::EffectiveNumber { beta: 0.9 })?;
/// assert!((e.iter().sum::<f64>() - 2.0).abs() < 1e-15 && e[0] > e[1]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn class_weights_from_counts<T: Float>(
    counts: &[u64],
    scheme: ClassWeighting,
) -> Result<Vec<T>> {
    if counts.is_empty() {
        return Err(Error::InvalidArgument {
            name: "counts",
            value: "[]".to_string(),
            expected: "at least 1 class",
        });
    }
    let classes = counts.len() as f64;
    let raw: Vec<f64> = match scheme {
        ClassWeighting::InverseFrequency => {
            let n: f64 = counts.iter().map(|&c| c as f64).sum();
            counts
                .iter()
                .map(|&c| {
                    if c == 0 {
                        0.0
                    } else {
                        n / (classes * c as f64)
                    }
                })
                .collect()
        }
        ClassWeighting::EffectiveNumber { beta } => {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::InvalidArgument {
                    name: "beta",
                    value: beta.to_string(),
                    expected: "a number in [0, 1)",
                });
            }
            let ln_beta = beta.ln(); // −inf for β = 0: then 1 − β^n = 1
            let w: Vec<f64> = counts
                .iter()
                .map(|&c| {
                    if c == 0 {
                        0.0
                    } else {
                        (1.0 - beta) / -(c as f64 * ln_beta).exp_m1()
                    }
                })
                .collect();
            let mut sum = CompensatedSum::default();
            for &v in &w {
                sum.add(v);
            }
            let sum = sum.value();
            if sum > 0.0 {
                w.iter().map(|v| v * classes / sum).collect()
            } else {
                w
            }
        }
    };
    Ok(raw.into_iter().map(T::from_f64).collect())
}

/// Class weights from class-index targets (any integer type): [`class_counts`] then
/// [`class_weights_from_counts`]. Binary targets are the case `classes = 2`.
///
/// # Errors
/// As [`class_counts`] and [`class_weights_from_counts`].
///
/// ```
/// use xent::{class_weights, cross_entropy, ClassWeightOptions, CrossEntropyOptions};
/// let y = [0i64, 0, 0, 1];
/// let w: Vec<f32> = class_weights(&y[..], 2, &ClassWeightOptions::default())?;
/// assert_eq!(w, [4.0 / 6.0, 2.0]);
/// let x = [0.0f32; 8];
/// let loss = cross_entropy(&x, &[4, 2], &y[..], &CrossEntropyOptions::default().weight(&w))?;
/// assert!((loss.item().unwrap() - std::f32::consts::LN_2).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn class_weights<'t, T: Float>(
    target: impl Into<ClassIndices<'t>>,
    classes: usize,
    opts: &ClassWeightOptions,
) -> Result<Vec<T>> {
    let counts = class_counts(target, classes, opts.ignore_index)?;
    class_weights_from_counts(&counts, opts.scheme)
}

/// `pos_weight_c = n_neg,c / n_pos,c` from per-class positive counts and the number of
/// samples: the weight that balances positives against negatives in
/// [`binary_cross_entropy_with_logits`](crate::binary_cross_entropy_with_logits).
///
/// A class with no positives gets 1 (no reweighting; never a division by zero); a class
/// with only positives gets 0.
///
/// # Errors
/// [`Error::InvalidArgument`] naming a count larger than `total`.
///
/// ```
/// let pw: Vec<f64> = xent::pos_weight_from_counts(&[25, 100, 0], 100)?;
/// assert_eq!(pw, [3.0, 0.0, 1.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn pos_weight_from_counts<T: Float>(positives: &[u64], total: u64) -> Result<Vec<T>> {
    if let Some(&bad) = positives.iter().find(|&&p| p > total) {
        return Err(Error::InvalidArgument {
            name: "positives",
            value: format!("{bad} (total {total})"),
            expected: "a count of at most `total`",
        });
    }
    Ok(positives
        .iter()
        .map(|&p| pw_of(p as f64, (total - p) as f64))
        .collect())
}

fn pw_of<T: Float>(pos: f64, neg: f64) -> T {
    T::from_f64(if pos > 0.0 { neg / pos } else { 1.0 })
}

/// `pos_weight_c = Σ_i (1 − y_{i,c}) / Σ_i y_{i,c}` from binary or multi-label targets
/// `y ∈ [0, 1]` of shape `shape`, classes on the last dim (a 1-d target is one class):
/// with hard 0/1 labels it is `n_neg/n_pos` per class; soft labels count fractionally.
///
/// A class with no positive mass gets 1, as in [`pos_weight_from_counts`].
///
/// # Errors
/// [`Error::BadShape`] when `shape` does not match `target` (or is 0-d);
/// [`Error::ValueOutOfRange`] naming the first target outside `[0, 1]` and its index;
/// [`Error::Allocation`] when the per-class sums do not fit in memory (a `(0, 2⁴⁰)`
/// shape holds no data but has `2⁴⁰` classes).
///
/// ```
/// // 4 samples × 2 labels: label 0 positive once, label 1 positive three times.
/// let y = [1.0f32, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
/// let pw = xent::pos_weight(&y, &[4, 2])?;
/// assert_eq!(pw, [3.0, 1.0 / 3.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn pos_weight<T: Float>(target: &[T], shape: &[usize]) -> Result<Vec<T>> {
    let numel = check_shape(shape, target.len())?;
    let Some(&classes) = shape.last() else {
        return Err(Error::BadShape {
            shape: Vec::new(),
            len: target.len(),
            reason: "a 0-d target has no class dimension",
        });
    };
    check_unit_interval("target", target, shape)?;
    let classes = if shape.len() == 1 { 1 } else { classes };
    let mut pos = try_vec("positive sums", &[classes], CompensatedSum::default())?;
    let mut neg = try_vec("negative sums", &[classes], CompensatedSum::default())?;
    for i in 0..numel {
        let y = target[i].to_f64();
        pos[i % classes].add(y);
        neg[i % classes].add(1.0 - y);
    }
    let mut out = try_vec("pos_weight", &[classes], T::ZERO)?;
    for ((o, p), n) in out.iter_mut().zip(&pos).zip(&neg) {
        *o = pw_of(p.value(), n.value());
    }
    Ok(out)
}
