//! The cross-entropy option set, owned and free of any dtype: what a binding (the
//! command line, candle, Python, MPI) holds between reading its arguments and calling
//! the library, and what it keeps alive in a graph until the backward pass.

// Through the crate root only: this file binds the public API, not the layers below.
use crate::{
    CrossEntropyOptions, Float, LinearCrossEntropyOptions, NllLossOptions, Reduction,
    DEFAULT_IGNORE_INDEX,
};

/// The options of [`cross_entropy`](crate::cross_entropy), owned and dtype-free, with
/// PyTorch's defaults: no class weights, `ignore_index = -100`, no label smoothing,
/// `mean`, no z-loss, no soft-capping, logit scale 1, the mean's own denominator.
///
/// [`CrossEntropyOptions`] borrows its class weights in the compute dtype `T`; this
/// type owns them as `f64` (every float dtype widens to `f64` exactly), so one value
/// serves every dtype and can be kept, cloned and sent between threads. A call
/// converts it with [`weight_as`](Self::weight_as) and [`options`](Self::options):
///
/// ```
/// use xent::{cross_entropy, CrossEntropySettings, Reduction};
/// let settings = CrossEntropySettings::default()
///     .weight(vec![1.0, 2.0, 0.5])
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum);
/// let w = settings.weight_as::<f32>();
/// let opts = settings.options(w.as_deref());
/// assert_eq!(opts.weight, Some(&[1.0f32, 2.0, 0.5][..]));
/// let x = [1.0f32, 2.0, 3.0];
/// let loss = cross_entropy(&x, &[1, 3], &[2i64][..], &opts)?;
/// assert!(loss.item().unwrap() > 0.0);
/// # Ok::<(), xent::Error>(())
/// ```
///
/// Nothing is checked here: the loss checks every value when it runs, with the
/// same errors as for [`CrossEntropyOptions`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CrossEntropySettings {
    /// Class weights `w` (`C` entries, in `f64`); `None` means all 1.
    pub weight: Option<Vec<f64>>,
    /// Rows whose class-index target equals this are ignored (default −100).
    /// Must be negative for probability targets.
    pub ignore_index: i64,
    /// `ε ∈ [0, 1]`: the target is mixed with the uniform distribution.
    pub label_smoothing: f64,
    /// How rows are combined (default mean).
    pub reduction: Reduction,
    /// z-loss scale `s` (`lse_square_scale`, default 0): adds `s·lse_n²` per row
    /// that counts, reduced like the loss.
    pub z_loss: f64,
    /// Logit soft-capping (default none): `x̃ = cap·tanh(x/cap)` replaces `x`.
    pub softcap: Option<f64>,
    /// Logit scale `s` (default 1): the loss sees `softcap(s·x)`; see
    /// [`CrossEntropyOptions::logit_scale`].
    pub logit_scale: f64,
    /// The denominator of `mean` (default `None`, the call's own); see
    /// [`CrossEntropyOptions::denominator`].
    pub denominator: Option<f64>,
}

impl Default for CrossEntropySettings {
    fn default() -> Self {
        CrossEntropySettings {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
            z_loss: 0.0,
            softcap: None,
            logit_scale: 1.0,
            denominator: None,
        }
    }
}

impl CrossEntropySettings {
    /// Sets the class weights (`C` entries).
    pub fn weight(mut self, weight: Vec<f64>) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    /// Sets `label_smoothing` (checked when the loss runs: `[0, 1]`).
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Sets the z-loss scale (finite, ≥ 0, checked when the loss runs).
    pub fn z_loss(mut self, scale: f64) -> Self {
        self.z_loss = scale;
        self
    }
    /// Soft-caps the logits at `cap` (finite, > 0, checked when the loss runs).
    pub fn softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }
    /// Scales the logits by `s` before soft-capping (finite, > 0, checked when the
    /// loss runs).
    pub fn logit_scale(mut self, s: f64) -> Self {
        self.logit_scale = s;
        self
    }
    /// Divides the `mean` by `d` instead of the call's own count (finite, > 0, with
    /// reduction `mean` only, checked when the loss runs).
    pub fn denominator(mut self, d: f64) -> Self {
        self.denominator = Some(d);
        self
    }

    /// The class weights rounded to `T` (`T::from_f64` of each), for
    /// [`options`](Self::options); `None` without weights.
    ///
    /// ```
    /// let s = xent::CrossEntropySettings::default().weight(vec![0.1, 2.0]);
    /// assert_eq!(s.weight_as::<f32>(), Some(vec![0.1f32, 2.0]));
    /// ```
    pub fn weight_as<T: Float>(&self) -> Option<Vec<T>> {
        self.weight
            .as_ref()
            .map(|w| w.iter().map(|&v| T::from_f64(v)).collect())
    }

    /// The library's options for compute dtype `T`: every setting as it is here, and
    /// `weight` as the class weights.
    ///
    /// `weight` is meant to be [`weight_as`](Self::weight_as)`::<T>()` of these
    /// settings; a binding that already holds the class weights in `T` (Python's
    /// arrays) passes those instead, and then leaves [`weight`](Self::weight) unset.
    /// This is the one place where the option set becomes [`CrossEntropyOptions`].
    pub fn options<'a, T: Float>(&self, weight: Option<&'a [T]>) -> CrossEntropyOptions<'a, T> {
        let mut opts = CrossEntropyOptions::default()
            .ignore_index(self.ignore_index)
            .label_smoothing(self.label_smoothing)
            .reduction(self.reduction)
            .z_loss(self.z_loss)
            .logit_scale(self.logit_scale);
        if let Some(w) = weight {
            opts = opts.weight(w);
        }
        if let Some(cap) = self.softcap {
            opts = opts.softcap(cap);
        }
        if let Some(d) = self.denominator {
            opts = opts.denominator(d);
        }
        opts
    }

    /// [`options`](Self::options) for
    /// [`linear_cross_entropy`](crate::linear_cross_entropy), with a scratch budget of
    /// `scratch_bytes` per block.
    pub fn linear_options<'a, T: Float>(
        &self,
        weight: Option<&'a [T]>,
        scratch_bytes: usize,
    ) -> LinearCrossEntropyOptions<'a, T> {
        LinearCrossEntropyOptions::from(self.options(weight)).scratch_bytes(scratch_bytes)
    }

    /// The options of [`nll_loss`](crate::nll_loss): `weight`, `ignore_index`, the
    /// reduction and the denominator. `nll_loss` has no label smoothing, z-loss,
    /// soft-cap or logit scale; those settings must be at their defaults.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the first
    /// setting that `nll_loss` cannot honour.
    pub fn nll_options<'a, T: Float>(
        &self,
        weight: Option<&'a [T]>,
    ) -> crate::Result<NllLossOptions<'a, T>> {
        let unsupported = if self.label_smoothing != 0.0 {
            Some(("label_smoothing", self.label_smoothing.to_string()))
        } else if self.z_loss != 0.0 {
            Some(("z_loss", self.z_loss.to_string()))
        } else if self.logit_scale != 1.0 {
            Some(("logit_scale", self.logit_scale.to_string()))
        } else {
            self.softcap.map(|c| ("softcap", c.to_string()))
        };
        if let Some((name, value)) = unsupported {
            return Err(crate::Error::InvalidArgument {
                name,
                value,
                expected: "the default: nll_loss takes weight, ignore_index, reduction and \
                           denominator only",
            });
        }
        let mut opts = NllLossOptions::default()
            .ignore_index(self.ignore_index)
            .reduction(self.reduction);
        if let Some(w) = weight {
            opts = opts.weight(w);
        }
        if let Some(d) = self.denominator {
            opts = opts.denominator(d);
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_those_of_the_borrowed_options() {
        let s = CrossEntropySettings::default();
        assert_eq!(
            s.options::<f64>(None),
            CrossEntropyOptions::<f64>::default()
        );
        assert_eq!(
            s.nll_options::<f32>(None).unwrap(),
            NllLossOptions::<f32>::default()
        );
    }

    #[test]
    fn every_setting_reaches_the_options() {
        let s = CrossEntropySettings::default()
            .weight(vec![0.5, 1.5])
            .ignore_index(3)
            .label_smoothing(0.25)
            .reduction(Reduction::None)
            .z_loss(1e-4)
            .softcap(30.0)
            .logit_scale(0.5)
            .denominator(7.0);
        let w = s.weight_as::<f32>().unwrap();
        let o = s.options(Some(&w[..]));
        let want = CrossEntropyOptions::default()
            .weight(&[0.5f32, 1.5][..])
            .ignore_index(3)
            .label_smoothing(0.25)
            .reduction(Reduction::None)
            .z_loss(1e-4)
            .softcap(30.0)
            .logit_scale(0.5)
            .denominator(7.0);
        assert_eq!(o, want);
        let l = s.linear_options(Some(&w[..]), 1 << 20);
        assert_eq!((l.cross_entropy, l.scratch_bytes), (want, 1 << 20));
    }

    #[test]
    fn nll_refuses_what_it_cannot_honour() {
        let base = CrossEntropySettings::default().ignore_index(1);
        assert_eq!(base.nll_options::<f64>(None).unwrap().ignore_index, 1);
        let d = base
            .clone()
            .denominator(3.0)
            .nll_options::<f64>(None)
            .unwrap();
        assert_eq!(d.denominator, Some(3.0));
        for (s, name) in [
            (base.clone().label_smoothing(0.1), "label_smoothing"),
            (base.clone().z_loss(0.1), "z_loss"),
            (base.clone().softcap(2.0), "softcap"),
            (base.clone().logit_scale(2.0), "logit_scale"),
        ] {
            match s.nll_options::<f64>(None) {
                Err(crate::Error::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
