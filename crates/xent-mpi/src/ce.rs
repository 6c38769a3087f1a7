//! `xent-mpi loss cross-entropy`: the files and flags of `xent loss cross-entropy`,
//! computed by `P = DP × TP` ranks: each holds the columns of its class shard for
//! the rows of its data-parallel group.

use xent::{
    cross_entropy_shard_grad_into, cross_entropy_shard_row_stats, cross_entropy_shard_stats,
    ClassShard, CrossEntropySettings, GradOut, Layout, Reduction, Targets,
};
use xent_cli::args::CrossEntropyArgs as Request;
use xent_cli::npy::{self, Array, Elem};
use xent_cli::operands::{
    check_outputs, check_regular_inputs, classify, reduction_name, upstream, vector, TargetKind,
};
use xent_cli::report::{deliver, Computed};
use xent_cli::Failure;

use crate::block::Source;
use crate::comm::{even_range, gather, gather_world, reduce_sum, Agreed, Groups, VocabParallel};
use crate::rows::RowParts;

/// Runs the request on every rank; rank 0's report comes back (empty elsewhere).
pub fn run(g: &Groups, req: &Request) -> Result<String, Agreed> {
    // Everything that can fail on bad input happens before the first collective.
    let read = g.agree(read(g, req))?;
    let description = match &read {
        Input::F32(x) => &x.description,
        Input::F64(x) => &x.description,
    };
    g.same_inputs(description)?;
    match read {
        Input::F32(x) => compute::<f32>(g, req, x),
        Input::F64(x) => compute::<f64>(g, req, x),
    }
}

/// The logits as read, by dtype.
enum Input {
    F32(Prepared<f32>),
    F64(Prepared<f64>),
}

/// This rank's part of the problem, checked.
struct Prepared<T> {
    /// The global shape and its layout.
    layout: Layout,
    /// This rank's block of the logits.
    x: Vec<T>,
    /// The class indices of every row (as i64, validated), or this rank's block of
    /// the probabilities.
    indices: Option<Vec<i64>>,
    probs: Option<Vec<T>>,
    /// The options, with the class weights read.
    settings: CrossEntropySettings,
    /// The class weights in `T`.
    weight: Option<Vec<T>>,
    grad_output: Option<Vec<T>>,
    /// The shapes and dtypes read, the same on every rank.
    description: String,
}

fn read(g: &Groups, req: &Request) -> Result<Input, Failure> {
    let [lse, entropy, argmax] = req.row_outputs.outputs();
    check_outputs(
        &[
            ("--out", req.class.files.out.as_deref()),
            ("--grad-out", req.class.files.grad_out.as_deref()),
            lse,
            entropy,
            argmax,
        ],
        &[
            ("--input", Some(&req.class.files.input)),
            ("--target", Some(&req.class.files.target)),
            ("--grad-output", req.class.files.grad_output.as_deref()),
            ("--weight", req.class.weight.as_deref()),
        ],
    )?;
    // Every rank opens every input: a FIFO would feed one and block the others.
    check_regular_inputs(&[
        ("--input", Some(&req.class.files.input)),
        ("--target", Some(&req.class.files.target)),
        ("--grad-output", req.class.files.grad_output.as_deref()),
        ("--weight", req.class.weight.as_deref()),
    ])?;
    let input = Source::open(&req.class.files.input, "input")?;
    // Probability targets (the input's shape, a float file) are read a block at a
    // time like the logits; class indices whole.
    let target = match Source::peek(&req.class.files.target) {
        Some(t) if t.shape == input.shape => Target::Block(t),
        _ => Target::Whole(npy::read(&req.class.files.target)?),
    };
    Ok(if input.f64 {
        Input::F64(prepare(g, req, &input, &target)?)
    } else {
        Input::F32(prepare(g, req, &input, &target)?)
    })
}

/// The target file: probabilities read by block, or the whole array.
enum Target {
    Block(Source),
    Whole(Array),
}

/// `(outer, C, inner)` of a layout, an unbatched `(C,)` input as one row.
fn dims(layout: &Layout) -> (usize, usize, usize) {
    (layout.outer(), layout.classes(), layout.inner())
}

/// Checks the whole problem as `xent loss` does (the same messages, every rank the
/// same), then reads this rank's block.
fn prepare<T: Elem>(
    g: &Groups,
    req: &Request,
    input: &Source,
    target: &Target,
) -> Result<Prepared<T>, Failure> {
    let len = input
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let layout = Layout::new(&input.shape, len.unwrap_or(usize::MAX))?;
    let mut settings = req.settings();
    let none = settings.reduction == Reduction::None;
    let loss_shape = if none { layout.row_shape() } else { Vec::new() };
    if let Some(p) = &req.class.weight {
        settings.weight = Some(vector::<f64>(&npy::read(p)?, "weight")?);
    }
    let weight = settings.weight_as::<T>();
    let grad_output = match &req.class.files.grad_output {
        Some(p) => Some(upstream::<T>(
            &npy::read(p)?,
            &loss_shape,
            none,
            reduction_name(settings.reduction),
        )?),
        None => None,
    };
    let kind = match target {
        Target::Whole(t) => Some(classify::<T>(false, t, &layout)?),
        Target::Block(_) => None,
    };
    let opts = settings.options(weight.as_deref());
    let (outer, c, inner) = dims(&layout);
    // The library's checks against the global shape, with no classes: every target
    // and option, with the positions `xent loss` names.
    let mut empty_shape = vec![outer, 0];
    empty_shape.extend_from_slice(&layout.shape()[layout.shape().len().min(2)..]);
    let targets: Targets<'_, T> = match &kind {
        Some(TargetKind::Indices(t)) => Targets::Indices(*t),
        _ => Targets::Probabilities(&[]),
    };
    cross_entropy_shard_stats::<T>(&[], &empty_shape, targets, &opts, ClassShard::full(c))?;
    let ((n0, n1), (c0, c1)) = parts(g, outer, c)[g.rank];
    let block = |s: &Source, path| s.block::<T>(path, (c, inner), (n0, n1), (c0, c1));
    let probs = match (target, &kind) {
        (Target::Block(t), _) => Some(block(t, &req.class.files.target)?),
        (_, Some(TargetKind::Probabilities(p))) => {
            let mut out = Vec::with_capacity((n1 - n0) * (c1 - c0) * inner);
            for n in n0..n1 {
                out.extend_from_slice(&p[(n * c + c0) * inner..(n * c + c1) * inner]);
            }
            Some(out)
        }
        _ => None,
    };
    let description = format!(
        "input {} {:?}, target {}, weight {:?}, grad_output {:?}",
        input.dtype(),
        input.shape,
        match target {
            Target::Block(t) => format!("{} {:?}", t.dtype(), t.shape),
            Target::Whole(t) => format!("{} {:?}", t.data.dtype(), t.shape),
        },
        weight.as_ref().map(Vec::len),
        grad_output.as_ref().map(Vec::len),
    );
    Ok(Prepared {
        x: block(input, &req.class.files.input)?,
        layout,
        indices: match &kind {
            Some(TargetKind::Indices(t)) => Some((0..t.len()).map(|i| t.get(i) as i64).collect()),
            _ => None,
        },
        probs,
        settings,
        weight,
        grad_output,
        description,
    })
}

/// This rank's targets: its rows' class indices or its block of probabilities.
fn local_target<'a, T: Elem>(idx: Option<&'a [i64]>, probs: Option<&'a [T]>) -> Targets<'a, T> {
    match (idx, probs) {
        (Some(idx), _) => Targets::Indices(idx.into()),
        (None, Some(t)) => Targets::Probabilities(t),
        (None, None) => Targets::Probabilities(&[]),
    }
}

/// Every rank's part, with `(n0, n1)` over dim 0 and `(c0, c1)` over the classes.
fn parts(g: &Groups, outer: usize, c: usize) -> Vec<((usize, usize), (usize, usize))> {
    (0..g.dp_size * g.tp_size)
        .map(|r| {
            let (dp, tp) = (r / g.tp_size, r % g.tp_size);
            (
                even_range(outer, g.dp_size, dp),
                even_range(c, g.tp_size, tp),
            )
        })
        .collect()
}

fn compute<T: Elem>(g: &Groups, req: &Request, p: Prepared<T>) -> Result<String, Agreed> {
    let (outer, c, inner) = dims(&p.layout);
    let all = parts(g, outer, c);
    let ((n0, n1), (c0, c1)) = all[g.rank];
    let xs = p.x;
    let (r0, r1) = (n0 * inner, n1 * inner);
    let local_shape = vec![n1 - n0, c1 - c0, inner];
    let opts = p.settings.options(p.weight.as_deref());
    let probs = p.probs;
    let idx = p.indices.as_deref().map(|i| &i[r0..r1]);
    let target = || local_target(idx, probs.as_deref());
    let shard = ClassShard::new(c0, c);
    let want_rows = RowParts::wanted(&req.row_outputs);
    let local = (|| -> Result<_, Failure> {
        let stats = if want_rows {
            cross_entropy_shard_row_stats(&xs, &local_shape, target(), &opts, shard)
        } else {
            cross_entropy_shard_stats(&xs, &local_shape, target(), &opts, shard)
        };
        Ok(stats?)
    })();
    let mut stats = g.agree(local)?;

    let mut vp = VocabParallel::new(g);
    let mean = p.settings.reduction == Reduction::Mean;
    let counts = vp.reduce(&mut stats, mean);
    let none = p.settings.reduction == Reduction::None;
    let mut loss = vec![0.0f64; if none { r1 - r0 } else { 1 }];
    let mut parts = RowParts::new(&req.row_outputs, r1 - r0);
    let z = g.agree(
        stats
            .finish_rows(counts, &mut loss, parts.outputs())
            .map_err(Failure::from),
    )?;
    let grad = match &req.class.files.grad_out {
        None => None,
        Some(_) => {
            let mut gr = vec![T::ZERO; xs.len()];
            let go = p
                .grad_output
                .as_deref()
                .map(|go| if none { &go[r0..r1] } else { go });
            let mut out = GradOut::new(&mut gr);
            if let Some(go) = go {
                out = out.grad_output(go);
            }
            let res = cross_entropy_shard_grad_into(
                &xs,
                &local_shape,
                target(),
                &opts,
                shard,
                &stats,
                out,
            );
            g.agree(res.map_err(Failure::from))?;
            Some(gr)
        }
    };

    // Rank 0 collects: the loss from the first class shard of every row group, the
    // gradient from every rank.
    let dp_rows: Vec<usize> = (0..g.dp_size)
        .map(|k| {
            let (a, b) = even_range(outer, g.dp_size, k);
            (b - a) * inner
        })
        .collect();
    let rows_all = parts.gather(g, &dp_rows);
    let (loss_all, z_all) = if g.tp_rank == 0 {
        if none {
            (
                gather(&g.dp, &loss, &dp_rows),
                reduce_sum(&g.dp, &[z.unwrap_or(0.0)]),
            )
        } else {
            let s = reduce_sum(&g.dp, &[loss[0], z.unwrap_or(0.0)]);
            (s.as_ref().map(|v| vec![v[0]]), s.map(|v| vec![v[1]]))
        }
    } else {
        (None, None)
    };
    let grad_all = grad.map(|gr| {
        let local: Vec<f64> = gr.iter().map(|v| v.to_f64()).collect();
        let counts: Vec<usize> = all
            .iter()
            .map(|&((a, b), (c0, c1))| (b - a) * (c1 - c0) * inner)
            .collect();
        gather_world(g, &local, &counts)
    });

    let written = if g.rank == 0 {
        let loss_vals: Vec<T> = loss_all
            .unwrap_or_default()
            .into_iter()
            .map(T::from_f64)
            .collect();
        let zv = z.map(|_| T::from_f64(z_all.map_or(0.0, |v| v[0])));
        let loss_shape = if none {
            p.layout.row_shape()
        } else {
            Vec::new()
        };
        let grad_full = grad_all.flatten().map(|flat| {
            let mut full = vec![T::ZERO; outer * c * inner];
            let mut at = 0;
            for &((a, b), (c0, c1)) in &all {
                for n in a..b {
                    let len = (c1 - c0) * inner;
                    let dst = &mut full[(n * c + c0) * inner..(n * c + c1) * inner];
                    for (d, s) in dst.iter_mut().zip(&flat[at..at + len]) {
                        *d = T::from_f64(*s);
                    }
                    at += len;
                }
            }
            full
        });
        let c = Computed::new(loss_vals, loss_shape, zv, req.class.files.out.as_deref()).file(
            req.class.files.grad_out.as_deref(),
            p.layout.shape(),
            grad_full,
        );
        rows_all
            .into_files(c, &req.row_outputs, &p.layout.row_shape())
            .encode()
            .and_then(|e| deliver(e, req.class.files.json))
    } else {
        Ok(String::new())
    };
    g.agree(written)
}
