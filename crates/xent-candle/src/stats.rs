//! The per-row outputs of one fused pass as candle tensors: [`RowStats`], and the
//! buffers the ops hand to xent as [`xent::RowOutputs`].

use std::sync::{Arc, Mutex};

use candle_core::{Device, Result, Shape, Tensor, WithDType};
use xent::RowOutputs;

use crate::storage::to_candle;

/// The per-row outputs of [`cross_entropy_with_stats`](crate::cross_entropy_with_stats)
/// and [`linear_cross_entropy_with_stats`](crate::linear_cross_entropy_with_stats), for
/// the logits as the loss sees them, `x̃ = softcap(logit_scale·x)`. Each tensor has the
/// row shape (`()` for `(C,)` logits, `(N)` for `(N, C)`, `(N, d1..dk)` for K-dim) and
/// is detached: it has no gradient and no graph.
///
/// Rows whose target is `ignore_index` still get `lse`, `entropy` and `argmax`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RowStats {
    /// `log Σ_c exp(x̃_c)`; `f64` for `f64` logits, else `f32`.
    pub lse: Tensor,
    /// `−Σ_c p_c·log p_c` of `p = softmax(x̃)`; the dtype of `lse`.
    pub entropy: Tensor,
    /// The predicted class, `i64`; ties go to the lowest index (as `torch.argmax`).
    pub argmax: Tensor,
    /// The row's z-loss term `z_loss·lse²` (0 on ignored rows); the dtype of `lse`.
    pub z: Tensor,
}

/// Where an op's forward pass leaves the per-row outputs for its caller.
pub(crate) type StatsSlot = Arc<Mutex<Option<RowStats>>>;

/// Takes the outputs an op's forward pass left in `slot`.
pub(crate) fn take(slot: &StatsSlot) -> Result<RowStats> {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| candle_core::Error::msg("xent: the forward pass wrote no per-row outputs"))
}

/// The per-row output buffers of one call, `rows` elements each.
pub(crate) struct StatsBuffers<A> {
    lse: Vec<A>,
    entropy: Vec<A>,
    argmax: Vec<i64>,
    z: Vec<A>,
}

impl<A: xent::Float + WithDType> StatsBuffers<A> {
    pub(crate) fn new(rows: usize) -> Result<Self> {
        let buf = |what| xent::alloc::zeroed_vec::<A>(what, &[rows]).map_err(to_candle);
        Ok(StatsBuffers {
            lse: buf("lse")?,
            entropy: buf("entropy")?,
            argmax: vec![0; rows],
            z: buf("z")?,
        })
    }

    /// The buffers as xent's output set.
    pub(crate) fn outputs(&mut self) -> RowOutputs<'_, A> {
        RowOutputs::new()
            .lse(&mut self.lse)
            .entropy(&mut self.entropy)
            .argmax(&mut self.argmax)
            .z(&mut self.z)
    }

    /// Leaves the filled buffers, as tensors of shape `shape`, in `slot`.
    pub(crate) fn store(self, shape: &Shape, slot: &StatsSlot) -> Result<()> {
        let t = |v: Vec<A>| Tensor::from_vec(v, shape, &Device::Cpu);
        let stats = RowStats {
            lse: t(self.lse)?,
            entropy: t(self.entropy)?,
            argmax: Tensor::from_vec(self.argmax, shape, &Device::Cpu)?,
            z: t(self.z)?,
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
        Ok(())
    }
}
