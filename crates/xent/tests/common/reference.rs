//! An independent f64 reference for cross-entropy, written from SEMANTICS.md's
//! formulas without any of the library's code: rows are gathered explicitly,
//! log-probabilities are max-shifted, and sums are compensated (Neumaier).

/// Compensated sum of an iterator of f64.
pub fn ksum(it: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in it {
        let t = s + v;
        c += if s.abs() >= v.abs() {
            (s - t) + v
        } else {
            (v - t) + s
        };
        s = t;
    }
    if s.is_finite() {
        s + c
    } else {
        s
    }
}

/// log_softmax of one row.
pub fn log_softmax_row(x: &[f64]) -> Vec<f64> {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = ksum(x.iter().map(|v| (v - m).exp())).ln();
    x.iter().map(|v| (v - m) - lse).collect()
}

/// Splits `(N, C, inner)` data into rows of C classes (row r = (n, i)).
pub fn gather_rows(x: &[f64], shape: &[usize]) -> Vec<Vec<f64>> {
    let (n, c, inner) = if shape.len() == 1 {
        (1, shape[0], 1)
    } else {
        (shape[0], shape[1], shape[2..].iter().product())
    };
    let mut rows = Vec::with_capacity(n * inner);
    for ni in 0..n {
        for i in 0..inner {
            rows.push((0..c).map(|k| x[ni * c * inner + k * inner + i]).collect());
        }
    }
    rows
}

/// Inverse of [`gather_rows`].
pub fn scatter_rows(rows: &[Vec<f64>], shape: &[usize]) -> Vec<f64> {
    let (c, inner) = if shape.len() == 1 {
        (shape[0], 1)
    } else {
        (shape[1], shape[2..].iter().product())
    };
    let mut out = vec![0.0; rows.len() * c];
    for (r, row) in rows.iter().enumerate() {
        let (ni, i) = (r / inner, r % inner);
        for (k, v) in row.iter().enumerate() {
            out[ni * c * inner + k * inner + i] = *v;
        }
    }
    out
}

pub enum RefTarget<'a> {
    Index(&'a [i64]),
    Prob(&'a [f64]),
}

pub struct RefOpts<'a> {
    pub weight: Option<&'a [f64]>,
    pub ignore_index: i64,
    pub eps: f64,
    /// "none", "mean" or "sum".
    pub reduction: &'a str,
}

/// Returns (per-row losses, reduced loss, gradient of the reduced loss — for "none"
/// the gradient of Σ_n l_n).
pub fn cross_entropy(
    x: &[f64],
    shape: &[usize],
    target: RefTarget<'_>,
    o: &RefOpts<'_>,
) -> (Vec<f64>, f64, Vec<f64>) {
    let rows = gather_rows(x, shape);
    let c = rows.first().map_or(0, |r| r.len());
    let w = |k: usize| o.weight.map_or(1.0, |w| w[k]);
    let cf = c as f64;
    let mut losses = Vec::new();
    let mut grads = Vec::new();
    let denom;
    match target {
        RefTarget::Index(y) => {
            denom = ksum(
                y.iter()
                    .filter(|&&t| t != o.ignore_index)
                    .map(|&t| w(t as usize)),
            );
            for (row, &t) in rows.iter().zip(y) {
                if t == o.ignore_index {
                    losses.push(0.0);
                    grads.push(vec![0.0; c]);
                    continue;
                }
                let t = t as usize;
                let l = log_softmax_row(row);
                let nll = -w(t) * l[t];
                let mut loss = (1.0 - o.eps) * nll;
                if o.eps > 0.0 {
                    let smooth = -ksum((0..c).map(|k| w(k) * l[k]));
                    loss += o.eps / cf * smooth;
                }
                losses.push(loss);
                let wsum = ksum((0..c).map(w));
                grads.push(
                    (0..c)
                        .map(|j| {
                            let p = l[j].exp();
                            let d = if j == t { 1.0 } else { 0.0 };
                            (1.0 - o.eps) * w(t) * (p - d) + o.eps / cf * (wsum * p - w(j))
                        })
                        .collect(),
                );
            }
        }
        RefTarget::Prob(t) => {
            let trows = gather_rows(t, shape);
            denom = rows.len() as f64;
            for (row, tr) in rows.iter().zip(&trows) {
                let l = log_softmax_row(row);
                let ts: Vec<f64> = tr.iter().map(|v| (1.0 - o.eps) * v + o.eps / cf).collect();
                losses.push(-ksum((0..c).map(|k| w(k) * ts[k] * l[k])));
                let wt = ksum((0..c).map(|k| w(k) * ts[k]));
                grads.push((0..c).map(|j| l[j].exp() * wt - w(j) * ts[j]).collect());
            }
        }
    }
    let total = ksum(losses.iter().cloned());
    let (reduced, scale) = match o.reduction {
        "mean" => (total / denom, 1.0 / denom),
        "sum" => (total, 1.0),
        _ => (f64::NAN, 1.0),
    };
    // Ignored rows have no gradient at all (PyTorch skips them), not 0·(1/D).
    let grads: Vec<Vec<f64>> = grads
        .into_iter()
        .enumerate()
        .map(|(r, g)| match target {
            RefTarget::Index(y) if y[r] == o.ignore_index => g,
            _ => g.into_iter().map(|v| v * scale).collect(),
        })
        .collect();
    (losses, reduced, scatter_rows(&grads, shape))
}
