//! What a training loop reads besides the loss: the per-row outputs ([`RowOutputs`]:
//! log-sum-exp, entropy, argmax, z term).
//!
//! The fused kernels write them in the pass that computes the loss and gradient,
//! from the logits as the loss sees them, `x̃ = softcap(s·x)`, in the compute type:
//! the statistics pass also sums `e·(x̃ − shift)` and tracks the argmax (see
//! `kernels::row::OutStats`), and only when an output is asked for. The class-sharded
//! calls (`ops::shard`) still compute their part of them in a pass of their own.

use super::check_len;
use crate::error::Result;
use crate::kernels::plan::RowOuts;
use crate::kernels::ptr::Ptr;

/// Per-row outputs of a cross-entropy call, each written only when given: one
/// element per row of the logits (the row shape: `()` for `(C,)`, `(N,)` for
/// `(N, C)`, `(N, d1..dk)` for K-dim), in the compute type `A` (`f32` for
/// `f32`/`bf16`/`f16` logits, `f64` for `f64`).
///
/// With `x̃ = softcap(s·x)` the logits as the loss sees them (logit scale `s`, then
/// soft-capping) and `p = softmax(x̃)` over the row's classes:
/// - `lse = log Σ_c exp(x̃_c)`, as `torch.logsumexp` (`+inf` when a logit is `+inf`,
///   `−inf` when all are `−inf`);
/// - `entropy = −Σ_c p_c·log p_c = lse − Σ_c p_c·x̃_c`, with `0·log 0 = 0` (as
///   `torch.special.entr`); NaN where the softmax is NaN;
/// - `argmax`: the class of the largest `x̃_c`, ties to the lowest index, the first
///   NaN where there is one, as `torch.argmax`;
/// - `z = z_loss·lse²`, the row's z term of the loss (0 on ignored rows).
///
/// Rows whose target is `ignore_index` still get their `lse`, `entropy` and `argmax`.
/// These outputs are detached: they are values, never differentiated, and the
/// gradient of a call does not depend on whether they are asked for.
///
/// ```
/// use xent::{cross_entropy_stats_into, CrossEntropyOptions, RowOutputs};
/// let x = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
/// let (mut lse, mut entropy, mut argmax) = ([0.0f32; 2], [0.0f32; 2], [0i64; 2]);
/// let rows = RowOutputs::new().lse(&mut lse).entropy(&mut entropy).argmax(&mut argmax);
/// let mut loss = [0.0f32];
/// cross_entropy_stats_into(&x, &[2, 3], &[2i64, 0][..], &CrossEntropyOptions::default(),
///     &mut loss, None, rows)?;
/// assert!((lse[1] - 3f32.ln()).abs() < 1e-6 && (entropy[1] - 3f32.ln()).abs() < 1e-6);
/// assert_eq!(argmax, [2, 0]); // row 1 is a tie: the lowest index
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct RowOutputs<'a, A> {
    /// `log Σ exp(x̃)` per row.
    pub lse: Option<&'a mut [A]>,
    /// `−Σ p log p` per row.
    pub entropy: Option<&'a mut [A]>,
    /// The predicted class per row (ties to the lowest index).
    pub argmax: Option<&'a mut [i64]>,
    /// The row's z term `z_loss·lse²` (0 on ignored rows).
    pub z: Option<&'a mut [A]>,
}

impl<A> Default for RowOutputs<'_, A> {
    fn default() -> Self {
        RowOutputs {
            lse: None,
            entropy: None,
            argmax: None,
            z: None,
        }
    }
}

impl<'a, A> RowOutputs<'a, A> {
    /// No outputs: a call with these does what the call without row outputs does.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks for the log-sum-exp of each row in `lse`.
    pub fn lse(mut self, lse: &'a mut [A]) -> Self {
        self.lse = Some(lse);
        self
    }
    /// Asks for the entropy of each row's softmax in `entropy`.
    pub fn entropy(mut self, entropy: &'a mut [A]) -> Self {
        self.entropy = Some(entropy);
        self
    }
    /// Asks for each row's predicted class in `argmax`.
    pub fn argmax(mut self, argmax: &'a mut [i64]) -> Self {
        self.argmax = Some(argmax);
        self
    }
    /// Asks for each row's z term in `z`.
    pub fn z(mut self, z: &'a mut [A]) -> Self {
        self.z = Some(z);
        self
    }

    /// The kernels' pointers to the outputs given (see [`RowOuts`]).
    pub(crate) fn ptrs(&mut self) -> RowOuts<A> {
        RowOuts {
            lse: self.lse.as_deref_mut().map(Ptr::new),
            entropy: self.entropy.as_deref_mut().map(Ptr::new),
            argmax: self.argmax.as_deref_mut().map(Ptr::new),
            z: self.z.as_deref_mut().map(Ptr::new),
        }
    }

    /// Checks that every output given has `rows` elements.
    pub(crate) fn check(&self, rows: usize) -> Result<()> {
        let lens = [
            ("lse", self.lse.as_ref().map(|s| s.len())),
            ("entropy", self.entropy.as_ref().map(|s| s.len())),
            ("argmax", self.argmax.as_ref().map(|s| s.len())),
            ("z", self.z.as_ref().map(|s| s.len())),
        ];
        for (name, len) in lens {
            if let Some(len) = len {
                check_len(name, len, rows)?;
            }
        }
        Ok(())
    }
}
