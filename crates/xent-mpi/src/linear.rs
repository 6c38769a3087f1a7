//! `xent-mpi loss linear-cross-entropy`: the files and flags of `xent loss
//! linear-cross-entropy`, computed by `P = DP × TP` ranks: each holds the rows of `W`
//! and `b` of its class shard and the rows of `h` of its data-parallel group, and
//! never the `N × V` logits.

use xent::{
    check_linear_shapes, cross_entropy_shard_stats, linear_cross_entropy_shard_into,
    linear_cross_entropy_shard_row_stats, linear_cross_entropy_shard_stats, ClassIndices,
    ClassShard, CrossEntropySettings, LinearGradOut, LinearInputs, Reduction,
};
use xent_cli::args::LinearArgs as Request;
use xent_cli::linear::Operands;
use xent_cli::npy::Elem;
use xent_cli::operands::{check_outputs, check_regular_inputs};
use xent_cli::report::{deliver, Computed};
use xent_cli::Failure;

use mpi::traits::Equivalence;

use crate::block::Source;
use crate::comm::{even_range, gather, reduce_sum, Agreed, Groups, OnePass, VocabParallel};
use crate::rows::RowParts;

/// The operands as read, by dtype.
enum Input {
    F32(Prepared<f32>),
    F64(Prepared<f64>),
}

/// The problem, checked; this rank's rows of `h`, `W` and `b`, and its targets.
struct Prepared<T> {
    n: usize,
    d: usize,
    v: usize,
    h: Vec<T>,
    w: Vec<T>,
    bias: Option<Vec<T>>,
    target: Vec<i64>,
    /// The options, with the class weights read.
    settings: CrossEntropySettings,
    class_weight: Option<Vec<T>>,
    grad_output: Option<Vec<T>>,
    scratch_bytes: usize,
    /// The shapes and dtypes read, the same on every rank.
    description: String,
}

/// Runs the request on every rank; rank 0's report comes back (empty elsewhere).
pub fn run(g: &Groups, req: &Request) -> Result<String, Agreed> {
    let read = g.agree(read(g, req))?;
    let description = match &read {
        Input::F32(p) => &p.description,
        Input::F64(p) => &p.description,
    };
    g.same_inputs(description)?;
    match read {
        Input::F32(p) => compute::<f32>(g, req, p),
        Input::F64(p) => compute::<f64>(g, req, p),
    }
}

fn read(g: &Groups, req: &Request) -> Result<Input, Failure> {
    check_outputs(&req.outputs(), &req.inputs())?;
    // Every rank opens every input: a FIFO would feed one and block the others.
    check_regular_inputs(&req.inputs())?;
    let scratch_bytes = req.scratch_bytes()?;
    let hidden = Source::open(&req.hidden, "hidden")?;
    Ok(if hidden.f64 {
        Input::F64(prepare(g, req, &hidden, scratch_bytes)?)
    } else {
        Input::F32(prepare(g, req, &hidden, scratch_bytes)?)
    })
}

/// Reads and checks every operand as `xent loss linear-cross-entropy` does, with its
/// messages, and keeps this rank's rows of `h` and of `W` and `b`.
fn prepare<T: Elem>(
    g: &Groups,
    req: &Request,
    hidden: &Source,
    scratch_bytes: usize,
) -> Result<Prepared<T>, Failure> {
    let &[n, d] = &hidden.shape[..] else {
        return Err(Failure::new(format!(
            "hidden must be a matrix (N, D), got shape {:?}",
            hidden.shape
        )));
    };
    let weight = Source::open(&req.weight, "weight")?;
    let &[v, dw] = &weight.shape[..] else {
        return Err(Failure::new(format!(
            "weight must be a matrix (2-d), got shape {:?}",
            weight.shape
        )));
    };
    let ops = Operands::<T>::read(req, n)?;
    let indices = ops.indices();
    // The library's operand checks, on the shapes alone (no rank holds all of h or W).
    check_linear_shapes(
        [n, d],
        [v, dw],
        ops.bias.as_ref().map(Vec::len),
        indices.len(),
    )?;
    // Every target against V and every option, on a shard of no classes (the
    // positions are the global rows).
    let opts = ops
        .settings
        .linear_options(ops.class_weight.as_deref(), scratch_bytes);
    let none_x: &[T] = &[];
    cross_entropy_shard_stats(
        none_x,
        &[n, 0],
        indices,
        &opts.cross_entropy,
        ClassShard::full(v),
    )?;
    let (n0, n1) = even_range(n, g.dp_size, g.dp_rank);
    let (c0, c1) = even_range(v, g.tp_size, g.tp_rank);
    let h = hidden.block::<T>(&req.hidden, (d, 1), (n0, n1), (0, d))?;
    let w = weight.block::<T>(&req.weight, (d, 1), (c0, c1), (0, d))?;
    let target = (n0..n1).map(|i| indices.get(i) as i64).collect();
    let description = format!(
        "hidden {} {:?}, weight {} {:?}, {}",
        hidden.dtype(),
        hidden.shape,
        weight.dtype(),
        weight.shape,
        ops.describe()
    );
    let Operands {
        bias,
        settings,
        class_weight,
        grad_output,
        ..
    } = ops;
    Ok(Prepared {
        n,
        d,
        v,
        h,
        w,
        bias: bias.map(|b| b[c0..c1].to_vec()),
        target,
        class_weight,
        grad_output,
        settings,
        scratch_bytes,
        description,
    })
}

/// `src` converted through `f64`.
fn to_f64<T: Elem>(src: &[T]) -> Vec<f64> {
    src.iter().map(|v| v.to_f64()).collect()
}

fn compute<T: Elem + Equivalence>(
    g: &Groups,
    req: &Request,
    p: Prepared<T>,
) -> Result<String, Agreed> {
    let (n, d, v) = (p.n, p.d, p.v);
    let (n0, n1) = even_range(n, g.dp_size, g.dp_rank);
    let (c0, c1) = even_range(v, g.tp_size, g.tp_rank);
    let rows = n1 - n0;
    let (h, w, b, target) = (p.h, p.w, p.bias, &p.target[..]);
    let opts = p
        .settings
        .linear_options(p.class_weight.as_deref(), p.scratch_bytes);
    let inputs = || {
        let i = LinearInputs::new(&h, [rows, d], &w, [c1 - c0, d]);
        match &b {
            Some(b) => i.linear_bias(b),
            None => i,
        }
    };
    let shard = ClassShard::new(c0, v);
    let none = p.settings.reduction == Reduction::None;
    let mut vp = VocabParallel::new(g);
    let mut loss = vec![0.0f64; if none { rows } else { 1 }];
    let mut parts = RowParts::new(&req.row_outputs, rows);
    let (mut dh, mut dw, mut db) = (
        req.grad_out_hidden
            .as_ref()
            .map(|_| vec![T::ZERO; rows * d]),
        req.grad_out_weight
            .as_ref()
            .map(|_| vec![T::ZERO; (c1 - c0) * d]),
        req.grad_out_bias.as_ref().map(|_| vec![T::ZERO; c1 - c0]),
    );
    let go = p
        .grad_output
        .as_deref()
        .map(|go| if none { &go[n0..n1] } else { go });
    let t = ClassIndices::from(target);
    // Some on every rank alike (the same flags): the paths' collectives pair up.
    let z = if let Some(out) =
        LinearGradOut::from_buffers(dh.as_deref_mut(), dw.as_deref_mut(), db.as_deref_mut(), go)
    {
        // One pass: each block's logits formed once, reduced across the class shards
        // between its forward and its backward.
        let mut pass = OnePass::new(&mut vp);
        let res = linear_cross_entropy_shard_into(
            inputs(),
            t,
            &opts,
            shard,
            &mut pass,
            &mut loss,
            Some(out),
            parts.outputs(),
        );
        if let Some(agreed) = pass.failed {
            return Err(agreed);
        }
        g.agree(res.map_err(Failure::from))?
    } else {
        // The forward alone: one GEMM, then the collectives over the whole batch.
        let local = if RowParts::wanted(&req.row_outputs) {
            linear_cross_entropy_shard_row_stats(inputs(), t, &opts, shard)
        } else {
            linear_cross_entropy_shard_stats(inputs(), t, &opts, shard)
        }
        .map_err(Failure::from);
        let mut stats = g.agree(local)?;
        let counts = vp.reduce(&mut stats, p.settings.reduction == Reduction::Mean);
        g.agree(
            stats
                .finish_rows(counts, &mut loss, parts.outputs())
                .map_err(Failure::from),
        )?
    };
    // ∂h: this shard's part of a sum over the class shards.
    let dh = dh.map(|mut dh| {
        vp.sum_tp(&mut dh);
        to_f64(&dh)
    });

    // Rank 0 collects the loss and ∂h from the first class shard of every row group,
    // ∂W and ∂b summed over the row groups, then from every class shard.
    let dp_rows: Vec<usize> = (0..g.dp_size)
        .map(|k| {
            let (a, b) = even_range(n, g.dp_size, k);
            b - a
        })
        .collect();
    let tp_classes: Vec<usize> = (0..g.tp_size)
        .map(|k| {
            let (a, b) = even_range(v, g.tp_size, k);
            b - a
        })
        .collect();
    let rows_all = parts.gather(g, &dp_rows);
    let (loss_all, z_all, dh_all) = if g.tp_rank == 0 {
        let (l, z) = if none {
            (
                gather(&g.dp, &loss, &dp_rows),
                reduce_sum(&g.dp, &[z.unwrap_or(0.0)]),
            )
        } else {
            let s = reduce_sum(&g.dp, &[loss[0], z.unwrap_or(0.0)]);
            (s.as_ref().map(|v| vec![v[0]]), s.map(|v| vec![v[1]]))
        };
        let dh_counts: Vec<usize> = dp_rows.iter().map(|r| r * d).collect();
        (l, z, dh.map(|dh| gather(&g.dp, &dh, &dh_counts)))
    } else {
        (None, None, None)
    };
    let collect_classes = |local: Option<Vec<T>>, per: usize| {
        local.map(|x| {
            let summed = reduce_sum(&g.dp, &to_f64(&x));
            if g.dp_rank == 0 {
                let counts: Vec<usize> = tp_classes.iter().map(|c| c * per).collect();
                gather(&g.tp, summed.as_deref().unwrap_or(&[]), &counts)
            } else {
                None
            }
        })
    };
    let dw_all = collect_classes(dw, d);
    let db_all = collect_classes(db, 1);

    let written = if g.rank == 0 {
        let cast = |v: Option<Option<Vec<f64>>>| {
            v.flatten()
                .map(|v| v.into_iter().map(T::from_f64).collect::<Vec<T>>())
        };
        let loss_vals: Vec<T> = loss_all
            .unwrap_or_default()
            .into_iter()
            .map(T::from_f64)
            .collect();
        let zv = z.map(|_| T::from_f64(z_all.map_or(0.0, |v| v[0])));
        let loss_shape = if none { vec![n] } else { Vec::new() };
        let c = Computed::new(loss_vals, loss_shape, zv, req.out.as_deref())
            .file(req.grad_out_hidden.as_deref(), &[n, d], cast(dh_all))
            .file(req.grad_out_weight.as_deref(), &[v, d], cast(dw_all))
            .file(req.grad_out_bias.as_deref(), &[v], cast(db_all));
        rows_all
            .into_files(c, &req.row_outputs, &[n])
            .encode()
            .and_then(|e| deliver(e, req.json))
    } else {
        Ok(String::new())
    };
    g.agree(written)
}
