//! The f64 reference of issue 28's outputs (per-row lse, entropy, argmax, z; logit
//! scale; denominator of mean), written from the definitions without the library's
//! code, and the runner that calls the library with every row output.

use super::reference::{self, gather_rows, ksum, scatter_rows, RefOpts, RefTarget};
use super::{Rng, Tol};
use xent::{
    cross_entropy_stats_into, CrossEntropyOptions, Element, Error, Float, GradOut, Reduction,
    RowOutputs, Targets,
};

// ---------------------------------------------------------------------------------
// The f64 reference

/// The options the reference takes, in PyTorch's terms.
#[derive(Debug, Clone, Copy)]
pub struct Opts<'a> {
    pub weight: Option<&'a [f64]>,
    pub ignore_index: i64,
    pub eps: f64,
    pub reduction: &'a str,
    pub z_loss: f64,
    pub softcap: Option<f64>,
    pub scale: f64,
    pub denominator: Option<f64>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            weight: None,
            ignore_index: -100,
            eps: 0.0,
            reduction: "mean",
            z_loss: 0.0,
            softcap: None,
            scale: 1.0,
            denominator: None,
        }
    }
}

impl<'a> Opts<'a> {
    pub fn library<A: Float>(&self, weight: Option<&'a [A]>) -> CrossEntropyOptions<'a, A> {
        let mut o = CrossEntropyOptions::default()
            .ignore_index(self.ignore_index)
            .label_smoothing(self.eps)
            .reduction(self.reduction.parse().unwrap())
            .z_loss(self.z_loss)
            .logit_scale(self.scale);
        if let Some(w) = weight {
            o = o.weight(w);
        }
        if let Some(c) = self.softcap {
            o = o.softcap(c);
        }
        if let Some(d) = self.denominator {
            o = o.denominator(d);
        }
        o
    }
}

/// One row's log-sum-exp, entropy and argmax, from the definitions: `log Σ e^{x}`
/// shifted by a finite max, `−Σ p log p` over the classes with `p > 0`, the first
/// NaN or else the first largest logit.
pub fn ref_row(x: &[f64]) -> (f64, f64, i64) {
    let arg = match x.iter().position(|v| v.is_nan()) {
        Some(i) => i,
        None => {
            let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            x.iter().position(|&v| v == m).unwrap()
        }
    };
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if x.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN, arg as i64);
    }
    if m == f64::INFINITY {
        return (f64::INFINITY, f64::NAN, arg as i64);
    }
    if m == f64::NEG_INFINITY {
        return (f64::NEG_INFINITY, f64::NAN, arg as i64);
    }
    let lse = m + ksum(x.iter().map(|v| (v - m).exp())).ln();
    let p: Vec<f64> = x.iter().map(|v| (v - lse).exp()).collect();
    let h = -ksum(p.iter().filter(|&&q| q > 0.0).map(|q| q * q.ln()));
    (lse, h, arg as i64)
}

/// What a call returns, in f64.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub loss: Vec<f64>,
    pub z_term: Option<f64>,
    pub grad: Vec<f64>,
    pub lse: Vec<f64>,
    pub entropy: Vec<f64>,
    pub argmax: Vec<i64>,
    pub z: Vec<f64>,
}

/// The reference of a cross-entropy call with class indices `y` and upstream
/// gradient 1 (all 1 for `none`): the loss sees `x̃ = softcap(s·x)`.
pub fn ref_call(x: &[f64], shape: &[usize], y: &[i64], o: &Opts<'_>) -> Out {
    let (s, cap) = (o.scale, o.softcap);
    let xt: Vec<f64> = x
        .iter()
        .map(|&v| cap.map_or(s * v, |c| c * (s * v / c).tanh()))
        .collect();
    // d x̃ / d x
    let chain: Vec<f64> = x
        .iter()
        .map(|&v| cap.map_or(s, |c| s * (1.0 - (s * v / c).tanh().powi(2))))
        .collect();
    let red = if o.denominator.is_some() {
        "sum"
    } else {
        o.reduction
    };
    let ropts = RefOpts {
        weight: o.weight,
        ignore_index: o.ignore_index,
        eps: o.eps,
        reduction: red,
    };
    let (losses, reduced, g) = reference::cross_entropy(&xt, shape, RefTarget::Index(y), &ropts);
    let rows = gather_rows(&xt, shape);
    let stats: Vec<_> = rows.iter().map(|r| ref_row(r)).collect();
    let kept: Vec<bool> = y.iter().map(|&t| t != o.ignore_index).collect();
    let z: Vec<f64> = stats
        .iter()
        .zip(&kept)
        .map(|(st, &k)| if k { o.z_loss * st.0 * st.0 } else { 0.0 })
        .collect();
    let m = kept.iter().filter(|&&k| k).count() as f64;
    let (ce_scale, z_scale) = match (o.reduction, o.denominator) {
        (_, Some(d)) => (1.0 / d, 1.0 / d),
        ("mean", None) => (1.0, 1.0 / m),
        _ => (1.0, 1.0),
    };
    let zsum = ksum(z.iter().cloned());
    let loss = match o.reduction {
        "none" => losses.iter().zip(&z).map(|(l, z)| l + z).collect(),
        _ => vec![reduced * ce_scale + zsum * z_scale],
    };
    // The z term's gradient: 2·z_loss·lse·p_j per kept row.
    let zg: Vec<Vec<f64>> = rows
        .iter()
        .zip(&stats)
        .zip(&kept)
        .map(|((r, st), &k)| {
            r.iter()
                .map(|v| match k {
                    true => 2.0 * o.z_loss * st.0 * (v - st.0).exp() * z_scale,
                    false => 0.0,
                })
                .collect()
        })
        .collect();
    let zg = scatter_rows(&zg, shape);
    let grad = (0..x.len())
        .map(|i| chain[i] * (g[i] * ce_scale + zg[i]))
        .collect();
    Out {
        loss,
        z_term: (o.z_loss != 0.0).then_some(zsum * z_scale),
        grad,
        lse: stats.iter().map(|s| s.0).collect(),
        entropy: stats.iter().map(|s| s.1).collect(),
        argmax: stats.iter().map(|s| s.2).collect(),
        z,
    }
}

// ---------------------------------------------------------------------------------
// Running the library

pub fn to_f64<A: Float>(v: &[A]) -> Vec<f64> {
    v.iter().map(|a| a.to_f64()).collect()
}

/// `cross_entropy_stats_into` with every row output, the gradient in the compute
/// type, and upstream gradient `go` (default 1).
pub fn run_lib<T: Element>(
    x: &[T],
    shape: &[usize],
    target: Targets<'_, T>,
    opts: &CrossEntropyOptions<'_, T::Acc>,
    go: Option<&[T::Acc]>,
) -> Result<Out, Error> {
    let rows: usize = match shape.len() {
        1 => 1,
        _ => shape[0] * shape[2..].iter().product::<usize>(),
    };
    let zero = T::Acc::ZERO;
    let mut loss = vec![
        zero;
        if opts.reduction == Reduction::None {
            rows
        } else {
            1
        }
    ];
    let mut grad = vec![zero; x.len()];
    let (mut lse, mut ent, mut arg, mut z) = (
        vec![zero; rows],
        vec![zero; rows],
        vec![0i64; rows],
        vec![zero; rows],
    );
    let mut g = GradOut::<T>::new_acc(&mut grad);
    if let Some(go) = go {
        g = g.grad_output(go);
    }
    let out = RowOutputs::new()
        .lse(&mut lse)
        .entropy(&mut ent)
        .argmax(&mut arg)
        .z(&mut z);
    let zt = cross_entropy_stats_into(x, shape, target, opts, &mut loss, Some(g), out)?;
    Ok(Out {
        loss: to_f64(&loss),
        z_term: zt.map(|v| v.to_f64()),
        grad: to_f64(&grad),
        lse: to_f64(&lse),
        entropy: to_f64(&ent),
        argmax: arg,
        z: to_f64(&z),
    })
}

pub fn compare(what: &str, got: &Out, want: &Out, tol: Tol, with_loss: bool) {
    if with_loss {
        tol.check_all(&format!("{what} loss"), &got.loss, &want.loss);
        if !want.grad.is_empty() {
            tol.check_all(&format!("{what} grad"), &got.grad, &want.grad);
        }
        match (got.z_term, want.z_term) {
            (Some(g), Some(w)) => tol.check(&format!("{what} z term"), g, w, w.abs().max(1.0)),
            (g, w) => assert_eq!(g.is_some(), w.is_some(), "{what} z term"),
        }
    }
    tol.check_all(&format!("{what} lse"), &got.lse, &want.lse);
    tol.check_all(&format!("{what} entropy"), &got.entropy, &want.entropy);
    tol.check_all(&format!("{what} z"), &got.z, &want.z);
    assert_eq!(got.argmax, want.argmax, "{what} argmax");
}

/// Logits rounded to `T`, and the same values in f64.
pub fn rounded<T: Element>(x: &[f64], from: impl Fn(f64) -> T) -> (Vec<T>, Vec<f64>) {
    let t: Vec<T> = x.iter().map(|&v| from(v)).collect();
    let back = t.iter().map(|v| v.to_acc().to_f64()).collect();
    (t, back)
}

/// Random class-index targets in the row shape, a few of them ignored.
pub fn targets(rng: &mut Rng, rows: usize, classes: usize, ignore_index: i64) -> Vec<i64> {
    (0..rows)
        .map(|r| match r % 4 == 1 {
            true => ignore_index,
            false => rng.below(classes) as i64,
        })
        .collect()
}
