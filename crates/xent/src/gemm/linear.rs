//! The engine as linear cross-entropy's row-block driver calls it: one value per call
//! holding the operands, the chosen kernels and the shared packing buffers; per block
//! of rows, the logits, then (from the block's logit gradient) `dh` and `dW`.

use super::{round_rows_to_bf16, Gemm, Grad, GradPrecision, Packed, Src, View, Workspace};

/// `s` as `f32` when `A` is `f32`.
fn f32_slice<A: 'static>(s: &[A]) -> Option<&[f32]> {
    (std::any::TypeId::of::<A>() == std::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: `A` is `f32` (equal `TypeId`s): same pointer, length and lifetime.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) }
    })
}

/// `s` as `f32` when `A` is `f32`.
fn f32_slice_mut<A: 'static>(s: &mut [A]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<A>() == std::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: `A` is `f32` (equal `TypeId`s); the exclusive borrow is passed on.
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) }
    })
}

/// Linear cross-entropy's three products for one call, `h` `N × D` and `W` `V × D`
/// row-major, in `f32`, bf16 or f16 with `f32` results.
pub(crate) struct LinearGemm<'a> {
    gemm: Gemm,
    h: Src<'a>,
    w: Src<'a>,
    d: usize,
    v: usize,
    /// `G` is rounded to bf16 before the backward products.
    round_g: bool,
    ws: Workspace,
}

impl<'a> LinearGemm<'a> {
    /// The engine for inputs of type `E` with accumulation type `A`: `None` unless `E`
    /// is `f32`, bf16 or f16 and `A` is `f32` (`f64` stays on the `gemm` crate).
    /// `grad` applies to bf16 inputs: f16 and `f32` inputs keep `G` in `f32`.
    pub(crate) fn new<E: 'static, A: 'static>(
        h: &'a [E],
        w: &'a [E],
        (d, v): (usize, usize),
        grad: GradPrecision,
    ) -> Option<Self> {
        f32_slice::<A>(&[])?;
        let (h, w) = (Src::of(h)?, Src::of(w)?);
        let grad = if grad == GradPrecision::Bf16 && matches!(w, Src::Bf16(_)) {
            GradPrecision::Bf16
        } else {
            GradPrecision::F32
        };
        let gemm = Gemm::new(&w, grad);
        // Without a bf16 unit the backward products run on the f32 FMA kernels, which
        // would widen a rounded G again: G then stays in f32 (more exact, no rounding
        // pass, read in place).
        let round_g = gemm.grad.packed == Packed::Bf16;
        Some(LinearGemm {
            gemm,
            h,
            w,
            d,
            v,
            round_g,
            ws: Workspace::default(),
        })
    }

    fn h_block(&self, r0: usize, rows: usize) -> View<'a> {
        let (a, b) = (r0 * self.d, (r0 + rows) * self.d);
        let src = match self.h {
            Src::F32(s) => Src::F32(&s[a..b]),
            Src::Bf16(s) => Src::Bf16(&s[a..b]),
            Src::F16(s) => Src::F16(&s[a..b]),
        };
        View::new(src, self.d, 1)
    }

    /// `x = h[r0..r0 + rows]·Wᵀ (+ b)`, `rows × V` row-major.
    pub(crate) fn logits<A: 'static>(
        &mut self,
        r0: usize,
        rows: usize,
        bias: Option<&[A]>,
        x: &mut [A],
    ) {
        let h = self.h_block(r0, rows);
        let bias = bias.map(|b| f32_slice(b).expect("checked in new"));
        let x = f32_slice_mut(x).expect("checked in new");
        self.gemm
            .logits(h, self.w, bias, (rows, self.d, self.v), x, &mut self.ws);
    }

    /// From the block's logit gradient `g` (`rows × V`, consumed: rounded in place when
    /// `G` goes in bf16): `dh_block (=|+=) G·W` and `dW += Gᵀ·h_block`, each when asked.
    pub(crate) fn backward<A: 'static>(
        &mut self,
        r0: usize,
        rows: usize,
        g: &mut [A],
        accumulate: bool,
        dh_block: Option<&mut [A]>,
        dw: Option<&mut [A]>,
    ) {
        if dh_block.is_none() && dw.is_none() {
            return;
        }
        let (d, v) = (self.d, self.v);
        let g = f32_slice_mut(g).expect("checked in new");
        let grad = if self.round_g {
            round_rows_to_bf16(g, rows, v)
        } else {
            Grad::f32(g, v)
        };
        if let Some(dh) = dh_block {
            let dh = f32_slice_mut(dh).expect("checked in new");
            self.gemm
                .hidden_grad(grad, self.w, (rows, d, v), accumulate, dh);
        }
        if let Some(dw) = dw {
            let dw = f32_slice_mut(dw).expect("checked in new");
            let h = self.h_block(r0, rows);
            self.gemm
                .weight_grad_add(grad, h, (rows, d, v), dw, &mut self.ws);
        }
    }
}
