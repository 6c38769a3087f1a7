//! `xent demo`: the classic softmax cross-entropy example, every number computed by
//! the library.
//!
//! On `x = [[1, 2, 3]] × 3` with targets `[2, 1, 0]`, three routes must give the same
//! loss and gradient: (a) `−mean Σ onehot·ln softmax(x)` by hand from
//! [`xent::softmax`], (b) `nll_loss(log_softmax(x))` chained back through
//! [`xent::log_softmax_backward_into`], and (c) the fused
//! [`xent::cross_entropy_with_grad`].

use std::fmt::Write as _;

use xent::{
    cross_entropy_with_grad, log_softmax, log_softmax_backward_into, nll_loss_with_grad, softmax,
    CrossEntropyOptions, NllLossOptions,
};

use crate::Failure;

/// Two routes agree when loss and every gradient entry are this close.
pub const TOLERANCE: f64 = 1e-6;

/// The logits of one sample.
const ROW: [f64; 3] = [1.0, 2.0, 3.0];
/// The targets of the three-row batch.
const TARGETS: [i64; 3] = [2, 1, 0];

/// A loss and its gradient, as one route computed them.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Its label in the report, e.g. `(a)`.
    pub label: &'static str,
    /// What it computes.
    pub what: &'static str,
    /// The loss.
    pub loss: f64,
    /// `∂loss/∂x`, row-major.
    pub grad: Vec<f64>,
}

/// Runs the demo and returns its report.
///
/// # Errors
/// Only if the library rejects the demo's own (valid) inputs.
pub fn run() -> Result<String, Failure> {
    let classes = ROW.len();
    let n = TARGETS.len();
    let shape = [n, classes];
    let x: Vec<f64> = ROW.iter().copied().cycle().take(n * classes).collect();
    let onehot = one_hot(&TARGETS, classes);
    let mut s = String::new();
    let out = &mut s;

    line(
        out,
        "xent demo: softmax cross-entropy three ways, every number computed by xent",
    );
    line(out, "");
    let _ = writeln!(
        out,
        "One-hot labels of targets {TARGETS:?} (C = {classes}):"
    );
    let _ = writeln!(out, "  {:<8}{}", "target", header(classes));
    for (t, row) in TARGETS.iter().zip(onehot.chunks(classes)) {
        let digits: String = row.iter().map(|v| format!("{v:>9}")).collect();
        let _ = writeln!(out, "  {t:<8}{digits}");
    }

    let p = softmax(&ROW, &[classes])?;
    let l = log_softmax(&ROW, &[classes])?;
    let log_p: Vec<f64> = p.iter().map(|v| v.ln()).collect();
    let log_diff = max_abs_diff(&l, &log_p);
    line(out, "");
    let _ = writeln!(out, "softmax and log_softmax of x = {}:", list(&ROW));
    let _ = writeln!(out, "  {:<14}{}", "", header(classes));
    let _ = writeln!(out, "  {:<14}{}", "softmax", numbers(&p));
    let _ = writeln!(out, "  {:<14}{}", "log_softmax", numbers(&l));
    let _ = writeln!(out, "  {:<14}{}", "ln(softmax)", numbers(&log_p));
    let _ = writeln!(
        out,
        "  log_softmax equals ln(softmax) here: max |difference| = {log_diff:.1e}"
    );
    line(
        out,
        "  (xent computes log_softmax as (x - max) - ln Σ exp(x - max), never as ln(softmax),",
    );
    line(out, "  which underflows to -inf for very negative logits)");

    let routes = three_routes(&x, &shape, &onehot)?;
    line(out, "");
    let _ = writeln!(
        out,
        "Batch x = [{}] x {n}, targets {TARGETS:?}, mean reduction:",
        list(&ROW)
    );
    let width = routes
        .iter()
        .map(|r| r.what.chars().count())
        .max()
        .unwrap_or(0);
    for r in &routes {
        let _ = writeln!(out, "  {} {:<width$}  loss {:.4}", r.label, r.what, r.loss);
    }
    line(out, "");
    line(out, "Gradient d loss / dx of each route:");
    let _ = writeln!(out, "  {:<6}{}", "", header(classes));
    for r in &routes {
        for (i, row) in r.grad.chunks(classes).enumerate() {
            let label = if i == 0 { r.label } else { "" };
            let _ = writeln!(out, "  {label:<6}{}", numbers(row));
        }
    }

    line(out, "");
    let _ = writeln!(
        out,
        "Single sample x = {} (shape [{classes}]): loss = -log_softmax(x)[t], gradient = softmax(x) - onehot(t)",
        list(&ROW)
    );
    let _ = writeln!(out, "  {:<8}{:>8}    {}", "target", "loss", header(classes));
    let mut single_ok = true;
    for t in 0..classes as i64 {
        let (loss, grad) =
            cross_entropy_with_grad(&ROW, &[classes], &[t][..], &CrossEntropyOptions::default())?;
        let loss = loss.item().unwrap_or(f64::NAN);
        let expected: Vec<f64> = p
            .iter()
            .zip(one_hot(&[t], classes))
            .map(|(p, y)| p - y)
            .collect();
        single_ok &= max_abs_diff(&grad, &expected) <= TOLERANCE
            && (loss + l[t as usize]).abs() <= TOLERANCE;
        let _ = writeln!(out, "  {t:<8}{loss:>8.4}    {}", numbers(&grad));
    }
    let _ = writeln!(
        out,
        "  {} within {TOLERANCE:.0e}",
        if single_ok {
            "cross_entropy matches -log_softmax and softmax - onehot for every target"
        } else {
            "cross_entropy DIFFERS from -log_softmax or softmax - onehot"
        }
    );

    line(out, "");
    line(out, &agreement(&routes, TOLERANCE));
    Ok(s)
}

/// Appends a line.
fn line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

/// The one-hot rows of class-index targets.
fn one_hot(targets: &[i64], classes: usize) -> Vec<f64> {
    let mut out = vec![0.0; targets.len() * classes];
    for (row, &t) in out.chunks_mut(classes).zip(targets) {
        row[t as usize] = 1.0;
    }
    out
}

/// `[1, 2, 3]`: values as `Display` writes them.
fn list(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// The column header `c=0 c=1 …`, aligned with [`numbers`].
fn header(classes: usize) -> String {
    (0..classes)
        .map(|c| format!("{:>9}", format!("c={c}")))
        .collect()
}

/// Values with 4 decimals in aligned columns.
fn numbers(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:>9.4}")).collect()
}

/// The largest `|a_i − b_i|` (NaN when any difference is NaN or the lengths differ).
fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    a.iter().zip(b).fold(0.0, |m: f64, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(d)
        }
    })
}

/// The three routes to the loss and gradient of `x` against the one-hot targets.
fn three_routes(x: &[f64], shape: &[usize; 2], onehot: &[f64]) -> Result<Vec<Route>, Failure> {
    let [n, classes] = *shape;

    // (a) By hand from softmax: −mean Σ onehot·ln p, gradient (p − onehot)/N.
    let p = softmax(x, shape)?;
    let by_hand = -p.iter().zip(onehot).map(|(p, y)| y * p.ln()).sum::<f64>() / n as f64;
    let by_hand_grad = p
        .iter()
        .zip(onehot)
        .map(|(p, y)| (p - y) / n as f64)
        .collect();

    // (b) nll_loss on log_softmax, its gradient chained through log_softmax's backward.
    let l = log_softmax(x, shape)?;
    let targets: Vec<i64> = onehot
        .chunks(classes)
        .map(|row| row.iter().position(|&y| y == 1.0).unwrap_or(0) as i64)
        .collect();
    let (nll, grad_l) = nll_loss_with_grad(&l, shape, &targets[..], &NllLossOptions::default())?;
    let mut nll_grad = vec![0.0; x.len()];
    log_softmax_backward_into(&l, &grad_l, shape, &mut nll_grad)?;

    // (c) The fused cross-entropy.
    let (ce, ce_grad) =
        cross_entropy_with_grad(x, shape, &targets[..], &CrossEntropyOptions::default())?;

    Ok(vec![
        Route {
            label: "(a)",
            what: "-mean Σ onehot·ln softmax(x), gradient (softmax - onehot)/N",
            loss: by_hand,
            grad: by_hand_grad,
        },
        Route {
            label: "(b)",
            what: "nll_loss(log_softmax(x)), gradient via log_softmax_backward",
            loss: nll.item().unwrap_or(f64::NAN),
            grad: nll_grad,
        },
        Route {
            label: "(c)",
            what: "cross_entropy_with_grad(x)",
            loss: ce.item().unwrap_or(f64::NAN),
            grad: ce_grad,
        },
    ])
}

/// The closing line: `all three routes agree …`, or which pairs disagree and by how much.
pub fn agreement(routes: &[Route], tolerance: f64) -> String {
    let mut worst = 0.0f64;
    let mut disagree = Vec::new();
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            let mut both = vec![a.loss];
            both.extend(&a.grad);
            let mut other = vec![b.loss];
            other.extend(&b.grad);
            let d = max_abs_diff(&both, &other);
            // NaN compares false: a NaN difference counts as disagreement.
            if d <= tolerance {
                worst = worst.max(d);
            } else {
                disagree.push(format!(
                    "{} vs {} (max difference {d:.1e})",
                    a.label, b.label
                ));
            }
        }
    }
    if disagree.is_empty() {
        format!(
            "all three routes agree: loss and gradient within {tolerance:.0e} (max difference {worst:.1e})"
        )
    } else {
        format!(
            "routes disagree beyond {tolerance:.0e}: {}",
            disagree.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(label: &'static str, loss: f64, grad: Vec<f64>) -> Route {
        Route {
            label,
            what: "",
            loss,
            grad,
        }
    }

    #[test]
    fn agreement_names_the_pairs_that_disagree() {
        let a = route("(a)", 1.0, vec![0.5, -0.5]);
        let b = route("(b)", 1.0, vec![0.5, -0.5 + 1e-9]);
        let c = route("(c)", 1.1, vec![0.5, -0.5]);
        let a2 = route("(c)", 1.0 + 1e-12, vec![0.5, -0.5]);
        assert!(agreement(&[a.clone(), b.clone(), a2], 1e-6).starts_with("all three routes agree"));
        let line = agreement(&[a, b, c], 1e-6);
        assert!(line.starts_with("routes disagree beyond 1e-6:"), "{line}");
        assert!(
            line.contains("(a) vs (c)") && line.contains("(b) vs (c)"),
            "{line}"
        );
        assert!(!line.contains("(a) vs (b)"), "{line}");
        let nan = route("(d)", f64::NAN, vec![0.5, -0.5]);
        assert!(agreement(&[route("(a)", 1.0, vec![0.5, -0.5]), nan], 1e-6).contains("(a) vs (d)"));
    }

    #[test]
    fn the_demo_runs_and_agrees() {
        let text = run().unwrap();
        assert!(text.contains("all three routes agree"), "{text}");
        assert!(text.contains("1.4076"), "{text}");
    }
}
