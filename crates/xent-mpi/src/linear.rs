//! `xent-mpi loss linear-cross-entropy`: the files and flags of `xent loss
//! linear-cross-entropy`, computed by `P = DP × TP` ranks: each holds the rows of `W`
//! and `b` of its class shard and the rows of `h` of its data-parallel group, and
//! never the `N × V` logits.

use xent::{
    linear_cross_entropy_shard_grad_into, linear_cross_entropy_shard_stats, ClassIndices,
    ClassShard, Error, LinearCrossEntropyOptions, LinearGradOut, LinearInputs, Reduction,
};
use xent_cli::linear::{matrix, Request};
use xent_cli::loss::{
    check_distinct, class_indices, deliver, not_float, reduction_name, upstream, vector, Computed,
};
use xent_cli::npy::{self, Array, Data, Elem};
use xent_cli::Failure;

use crate::comm::{even_range, gather, reduce_sum, Agreed, Groups, VocabParallel};

/// The operands as read, by dtype.
enum Input {
    F32(Prepared<f32>),
    F64(Prepared<f64>),
}

/// The whole problem, checked; each rank then keeps its part.
struct Prepared<T> {
    n: usize,
    d: usize,
    v: usize,
    h: Vec<T>,
    w: Vec<T>,
    bias: Option<Vec<T>>,
    target: Vec<i64>,
    class_weight: Option<Vec<T>>,
    grad_output: Option<Vec<T>>,
    scratch_bytes: usize,
}

/// Runs the request on every rank; rank 0's report comes back (empty elsewhere).
pub fn run(g: &Groups, req: &Request) -> Result<String, Agreed> {
    match g.agree(read(req))? {
        Input::F32(p) => compute::<f32>(g, req, p),
        Input::F64(p) => compute::<f64>(g, req, p),
    }
}

fn read(req: &Request) -> Result<Input, Failure> {
    check_distinct(&[
        ("--out", req.out.as_deref()),
        ("--grad-out-hidden", req.grad_out_hidden.as_deref()),
        ("--grad-out-weight", req.grad_out_weight.as_deref()),
        ("--grad-out-bias", req.grad_out_bias.as_deref()),
    ])?;
    let scratch_bytes = usize::try_from(req.scratch_mib)
        .ok()
        .and_then(|m| m.checked_mul(1 << 20))
        .ok_or_else(|| {
            Failure::new(format!(
                "--scratch-mib {} does not fit in memory addresses",
                req.scratch_mib
            ))
        })?;
    let Array { shape, data } = npy::read(&req.hidden)?;
    Ok(match data {
        Data::F32(h) => Input::F32(prepare(req, h, &shape, scratch_bytes)?),
        Data::F64(h) => Input::F64(prepare(req, h, &shape, scratch_bytes)?),
        other => return Err(not_float("hidden", &req.hidden, &other)),
    })
}

fn options<'a, T: Elem>(
    req: &Request,
    class_weight: Option<&'a [T]>,
    scratch_bytes: usize,
) -> LinearCrossEntropyOptions<'a, T> {
    let mut opts = LinearCrossEntropyOptions::default()
        .ignore_index(req.ignore_index)
        .label_smoothing(req.label_smoothing)
        .z_loss(req.z_loss)
        .reduction(req.reduction)
        .scratch_bytes(scratch_bytes);
    if let Some(cap) = req.softcap {
        opts = opts.softcap(cap);
    }
    if let Some(cw) = class_weight {
        opts = opts.weight(cw);
    }
    opts
}

/// Reads and checks every operand as `xent loss linear-cross-entropy` does, with its
/// messages.
fn prepare<T: Elem>(
    req: &Request,
    h: Vec<T>,
    h_shape: &[usize],
    scratch_bytes: usize,
) -> Result<Prepared<T>, Failure> {
    let &[n, d] = h_shape else {
        return Err(Failure::new(format!(
            "hidden must be a matrix (N, D), got shape {h_shape:?}"
        )));
    };
    let (w_shape, w) = matrix::<T>(&req.weight, "weight")?;
    let bias = match &req.bias {
        Some(p) => {
            let a = npy::read(p)?;
            if !matches!(a.data, Data::F32(_) | Data::F64(_)) {
                return Err(not_float("bias", p, &a.data));
            }
            Some(vector::<T>(&a, "bias")?)
        }
        None => None,
    };
    let target = npy::read(&req.target)?;
    let Some(indices) = class_indices(&target) else {
        return Err(Failure::new(format!(
            "target must hold class indices of an integer dtype, got {}",
            target.data.dtype()
        )));
    };
    if target.shape.len() != 1 {
        return Err(Failure::new(format!(
            "target must be a vector of N = {n} class indices, got shape {:?}",
            target.shape
        )));
    }
    let class_weight = match &req.class_weight {
        Some(p) => Some(vector::<T>(&npy::read(p)?, "class weight")?),
        None => None,
    };
    let none = req.reduction == Reduction::None;
    let loss_shape = if none { vec![n] } else { Vec::new() };
    let grad_output = match &req.grad_output {
        Some(p) => Some(upstream::<T>(
            &npy::read(p)?,
            &loss_shape,
            none,
            reduction_name(req.reduction),
        )?),
        None => None,
    };
    let v = w_shape[0];
    if let Some(b) = &bias {
        if b.len() != v {
            return Err(Error::DimMismatch {
                left: "linear_weight",
                left_dim: v,
                right: "linear_bias",
                right_dim: b.len(),
                what: "rows",
            }
            .into());
        }
    }
    // The library's checks on the global operands, on a shard of no classes (no
    // logits are formed): shapes, every target against V, every option.
    let opts = options(req, class_weight.as_deref(), scratch_bytes);
    let no_w: &[T] = &[];
    let inputs = LinearInputs::new(&h, [n, d], no_w, [0, w_shape[1]]);
    linear_cross_entropy_shard_stats(inputs, indices, &opts, ClassShard::full(v))?;
    let target = (0..indices.len()).map(|i| indices.get(i) as i64).collect();
    Ok(Prepared {
        n,
        d,
        v,
        h,
        w,
        bias,
        target,
        class_weight,
        grad_output,
        scratch_bytes,
    })
}

/// `src` converted through `f64`.
fn to_f64<T: Elem>(src: &[T]) -> Vec<f64> {
    src.iter().map(|v| v.to_f64()).collect()
}

fn compute<T: Elem>(g: &Groups, req: &Request, p: Prepared<T>) -> Result<String, Agreed> {
    let (n, d, v) = (p.n, p.d, p.v);
    let (n0, n1) = even_range(n, g.dp_size, g.dp_rank);
    let (c0, c1) = even_range(v, g.tp_size, g.tp_rank);
    let rows = n1 - n0;
    // This rank's operands; the rest is dropped before any work.
    let h: Vec<T> = p.h[n0 * d..n1 * d].to_vec();
    let w: Vec<T> = p.w[c0 * d..c1 * d].to_vec();
    let b: Option<Vec<T>> = p.bias.as_ref().map(|b| b[c0..c1].to_vec());
    let target = &p.target[n0..n1];
    drop((p.h, p.w, p.bias));
    let opts = options(req, p.class_weight.as_deref(), p.scratch_bytes);
    let inputs = || {
        let i = LinearInputs::new(&h, [rows, d], &w, [c1 - c0, d]);
        match &b {
            Some(b) => i.linear_bias(b),
            None => i,
        }
    };
    let shard = ClassShard::new(c0, v);
    let local =
        linear_cross_entropy_shard_stats(inputs(), ClassIndices::from(target), &opts, shard)
            .map_err(Failure::from);
    let mut stats = g.agree(local)?;

    let mut vp = VocabParallel::new(g);
    let none = req.reduction == Reduction::None;
    let counts = vp.reduce(&mut stats, req.reduction == Reduction::Mean);
    let mut loss = vec![0.0f64; if none { rows } else { 1 }];
    let z = g.agree(stats.finish(counts, &mut loss).map_err(Failure::from))?;

    let want_grad = req.grad_out_hidden.is_some()
        || req.grad_out_weight.is_some()
        || req.grad_out_bias.is_some();
    let (mut dh, mut dw, mut db) = (
        req.grad_out_hidden
            .as_ref()
            .map(|_| vec![T::ZERO; rows * d]),
        req.grad_out_weight
            .as_ref()
            .map(|_| vec![T::ZERO; (c1 - c0) * d]),
        req.grad_out_bias.as_ref().map(|_| vec![T::ZERO; c1 - c0]),
    );
    if want_grad {
        let mut out = LinearGradOut::new();
        if let Some(x) = dh.as_deref_mut() {
            out = out.hidden(x);
        }
        if let Some(x) = dw.as_deref_mut() {
            out = out.linear_weight(x);
        }
        if let Some(x) = db.as_deref_mut() {
            out = out.linear_bias(x);
        }
        let go = p
            .grad_output
            .as_deref()
            .map(|go| if none { &go[n0..n1] } else { go });
        if let Some(go) = go {
            out = out.grad_output(go);
        }
        let res = linear_cross_entropy_shard_grad_into(
            inputs(),
            ClassIndices::from(target),
            &opts,
            shard,
            &stats,
            out,
        );
        g.agree(res.map_err(Failure::from))?;
    }
    // ∂h: this shard's part of a sum over the class shards.
    let dh = dh.map(|dh| {
        let mut s = to_f64(&dh);
        vp.sum_tp(&mut s);
        s
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
        Computed::new(loss_vals, loss_shape, zv, req.out.as_deref())
            .file(req.grad_out_hidden.as_deref(), &[n, d], cast(dh_all))
            .file(req.grad_out_weight.as_deref(), &[v, d], cast(dw_all))
            .file(req.grad_out_bias.as_deref(), &[v], cast(db_all))
            .encode()
            .and_then(|e| deliver(e, req.json))
    } else {
        Ok(String::new())
    };
    g.agree(written)
}
