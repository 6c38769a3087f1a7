//! The per-row outputs (`--lse-out`, `--entropy-out`, `--argmax-out`) of a sharded
//! loss: each rank's rows from [`xent::ShardStats::finish_rows`], gathered on rank 0
//! from the first class shard of every row group.

use xent::RowOutputs;
use xent_cli::args::RowOutputArgs;
use xent_cli::npy::Elem;
use xent_cli::report::Computed;

use crate::comm::{gather, Groups};

/// This rank's per-row outputs asked for, in `f64` (the argmax in `i64`).
pub struct RowParts {
    lse: Option<Vec<f64>>,
    entropy: Option<Vec<f64>>,
    argmax: Option<Vec<i64>>,
}

impl RowParts {
    /// Whether `args` asks for any per-row output.
    pub fn wanted(args: &RowOutputArgs) -> bool {
        args.outputs().iter().any(|(_, p)| p.is_some())
    }

    /// Buffers of `rows` rows for the outputs `args` asks for.
    pub fn new(args: &RowOutputArgs, rows: usize) -> Self {
        RowParts {
            lse: args.lse_out.as_ref().map(|_| vec![0.0; rows]),
            entropy: args.entropy_out.as_ref().map(|_| vec![0.0; rows]),
            argmax: args.argmax_out.as_ref().map(|_| vec![0; rows]),
        }
    }

    /// The library's view of the buffers.
    pub fn outputs(&mut self) -> RowOutputs<'_, f64> {
        let mut rows = RowOutputs::new();
        if let Some(b) = self.lse.as_deref_mut() {
            rows = rows.lse(b);
        }
        if let Some(b) = self.entropy.as_deref_mut() {
            rows = rows.entropy(b);
        }
        if let Some(b) = self.argmax.as_deref_mut() {
            rows = rows.argmax(b);
        }
        rows
    }

    /// Gathers every row group's outputs (from its first class shard, `dp_rows[k]`
    /// rows for group `k`) on world rank 0, in row order; empty elsewhere. The class
    /// shards of the same rows hold the same values.
    pub fn gather(self, g: &Groups, dp_rows: &[usize]) -> RowParts {
        let mut out = RowParts {
            lse: None,
            entropy: None,
            argmax: None,
        };
        if g.tp_rank != 0 {
            return out;
        }
        let all = |v: &[f64]| gather(&g.dp, v, dp_rows);
        out.lse = self.lse.and_then(|v| all(&v));
        out.entropy = self.entropy.and_then(|v| all(&v));
        // Class indices are exact in f64 (below 2^53).
        out.argmax = self.argmax.and_then(|v| {
            let f: Vec<f64> = v.iter().map(|&a| a as f64).collect();
            all(&f).map(|a| a.into_iter().map(|x| x as i64).collect())
        });
        out
    }

    /// Adds the gathered outputs to `c` as files of shape `row_shape`, the floats in
    /// the input's dtype `T`.
    pub fn into_files<T: Elem>(
        self,
        c: Computed<T>,
        args: &RowOutputArgs,
        row_shape: &[usize],
    ) -> Computed<T> {
        let cast = |v: Option<Vec<f64>>| v.map(|v| v.into_iter().map(T::from_f64).collect());
        c.file(args.lse_out.as_deref(), row_shape, cast(self.lse))
            .file(args.entropy_out.as_deref(), row_shape, cast(self.entropy))
            .index_file(args.argmax_out.as_deref(), row_shape, self.argmax)
    }
}
