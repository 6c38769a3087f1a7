//! The communicators of a run and the collectives of one sharded loss.
//!
//! The `P = DP × TP` ranks of `MPI_COMM_WORLD` form a grid: world rank
//! `dp_rank · TP + tp_rank`. `MPI_Comm_split` gives each rank its tensor-parallel group
//! (the `TP` ranks that hold the same rows, each a shard of the classes: the
//! [`VocabParallel`] group) and its data-parallel group (the `DP` ranks that hold the
//! same class shard for different rows).

use std::time::{Duration, Instant};

use std::ffi::{c_int, c_void};

use mpi::collective::{SystemOperation, UnsafeUserOperation};
use mpi::datatype::{MutView, UserDatatype, View};
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;
use xent::{MaxLoc, ShardReduce, ShardStats};
use xent_cli::Failure;

/// The world and its tensor- and data-parallel groups.
pub struct Groups {
    /// `MPI_COMM_WORLD`.
    pub world: SimpleCommunicator,
    /// The ranks holding the same rows (one class shard each).
    pub tp: SimpleCommunicator,
    /// The ranks holding the same class shard (different rows).
    pub dp: SimpleCommunicator,
    /// This rank in the world.
    pub rank: usize,
    /// `TP`, and this rank's class shard.
    pub tp_size: usize,
    /// This rank's index in its tensor-parallel group.
    pub tp_rank: usize,
    /// `DP`.
    pub dp_size: usize,
    /// This rank's index in its data-parallel group.
    pub dp_rank: usize,
}

impl Groups {
    /// Splits `world` into `P / tp` tensor-parallel groups of `tp` consecutive ranks
    /// (`tp = None`: one group of all ranks).
    ///
    /// # Errors
    /// When `tp` does not divide the number of ranks; every rank sees the same
    /// arguments, so every rank fails alike (no collective has run).
    pub fn new(world: SimpleCommunicator, tp: Option<usize>) -> Result<Groups, Failure> {
        let size = world.size() as usize;
        let rank = world.rank() as usize;
        let tp_size = tp.unwrap_or(size);
        if tp_size == 0 || !size.is_multiple_of(tp_size) {
            return Err(Failure::new(format!(
                "--tp {tp_size} does not divide the {size} ranks (P = DP × TP)"
            )));
        }
        let (dp_rank, tp_rank) = (rank / tp_size, rank % tp_size);
        let split = |color: usize, key: usize| {
            world
                .split_by_color_with_key(Color::with_value(color as i32), key as i32)
                .ok_or_else(|| Failure::new("MPI_Comm_split gave no communicator"))
        };
        let tp_comm = split(dp_rank, tp_rank)?;
        let dp_comm = split(tp_rank, dp_rank)?;
        Ok(Groups {
            world,
            tp: tp_comm,
            dp: dp_comm,
            rank,
            tp_size,
            tp_rank,
            dp_size: size / tp_size,
            dp_rank,
        })
    }

    /// Agrees on failure: an all-reduce (MIN) of the lowest failing rank. Every rank
    /// returns an error when any failed; the lowest failing rank's error carries its
    /// message (and `print` is set on it), the others' say which rank failed.
    pub fn agree<T>(&self, result: Result<T, Failure>) -> Result<T, Agreed> {
        let size = self.world.size();
        let mine = if result.is_err() {
            self.rank as i32
        } else {
            size
        };
        let mut lowest = size;
        self.world
            .all_reduce_into(&mine, &mut lowest, SystemOperation::min());
        match result {
            Err(f) => Err(Agreed {
                failure: f,
                print: lowest == mine,
            }),
            Ok(_) if lowest < size => Err(Agreed {
                failure: Failure::new(format!("rank {lowest} failed")),
                print: false,
            }),
            Ok(v) => Ok(v),
        }
    }
}

/// The bytes of one rank's description of its inputs in [`Groups::same_inputs`]: a
/// 64-bit hash of the whole text, then its first bytes (zero-padded).
const DESCRIPTION_BYTES: usize = 512;

impl Groups {
    /// Checks that every rank read the same inputs (`description`: their shapes and
    /// dtypes), with one all-gather of a fixed-size record per rank, before any
    /// collective whose sizes depend on them: ranks that read different files (a
    /// stale copy on one node) would otherwise abort inside MPI or agree on a wrong
    /// loss. Every rank fails alike; rank 0 prints the one line.
    ///
    /// # Errors
    /// When any rank's description differs from rank 0's.
    pub fn same_inputs(&self, description: &str) -> Result<(), Agreed> {
        let record = |text: &str| {
            // FNV-1a: the record differs whenever the text does, also past its cut.
            let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            let mut r = vec![0u8; DESCRIPTION_BYTES];
            r[..8].copy_from_slice(&hash.to_le_bytes());
            let n = text.len().min(DESCRIPTION_BYTES - 8);
            r[8..8 + n].copy_from_slice(&text.as_bytes()[..n]);
            r
        };
        let mine = record(description);
        let size = self.world.size() as usize;
        let mut all = vec![0u8; DESCRIPTION_BYTES * size];
        self.world.all_gather_into(&mine[..], &mut all[..]);
        let records: Vec<&[u8]> = all.chunks_exact(DESCRIPTION_BYTES).collect();
        let Some(other) = records.iter().position(|r| *r != records[0]) else {
            return Ok(());
        };
        let text = |r: &[u8]| {
            let end = r[8..]
                .iter()
                .position(|&b| b == 0)
                .map_or(r.len(), |e| e + 8);
            String::from_utf8_lossy(&r[8..end]).into_owned()
        };
        Err(Agreed {
            failure: Failure::new(format!(
                "the ranks read different inputs (a stale or different copy on some node?): \
                 rank 0 read {}; rank {other} read {}",
                text(records[0]),
                text(records[other])
            )),
            print: self.rank == 0,
        })
    }
}

/// A failure every rank agreed on: all exit 2, one prints.
#[derive(Debug)]
pub struct Agreed {
    /// What failed.
    pub failure: Failure,
    /// Whether this rank prints it (the lowest failing rank).
    pub print: bool,
}

/// The collectives of one vocab-parallel loss, timed.
pub struct VocabParallel<'g> {
    groups: &'g Groups,
    /// All-reduces run so far.
    pub all_reduces: usize,
    /// Bytes this rank sent into them.
    pub bytes: usize,
    /// Time spent in them.
    pub time: Duration,
}

impl<'g> VocabParallel<'g> {
    /// Collectives over `groups`.
    pub fn new(groups: &'g Groups) -> Self {
        VocabParallel {
            groups,
            all_reduces: 0,
            bytes: 0,
            time: Duration::ZERO,
        }
    }

    /// All-reduces `buf` in place over `comm`; nothing to do (and nothing counted)
    /// on a group of one rank.
    fn all_reduce<X: Equivalence + Copy>(
        &mut self,
        comm: &SimpleCommunicator,
        buf: &mut [X],
        op: SystemOperation,
    ) {
        if comm.size() == 1 {
            return;
        }
        let t = Instant::now();
        let send = buf.to_vec();
        comm.all_reduce_into(&send[..], buf, op);
        self.time += t.elapsed();
        self.all_reduces += 1;
        self.bytes += size_of_val(buf);
    }

    /// All-reduces `(max, argmax)` pairs in place over `comm` with the library's
    /// max-location order ([`MaxLoc::max`]: NaN first, then the larger value, then
    /// the lower index), each pair one element of a 16-byte datatype so that no
    /// segmentation of the collective splits a pair.
    fn all_reduce_max_loc(&mut self, comm: &SimpleCommunicator, buf: &mut [MaxLoc]) {
        if comm.size() == 1 {
            return;
        }
        let t = Instant::now();
        // Each pair as two words: the value's bits, then the index.
        let send: Vec<i64> = buf
            .iter()
            .flat_map(|p| [p.value.to_bits() as i64, p.index])
            .collect();
        let mut recv = vec![0i64; send.len()];
        let pair = UserDatatype::contiguous(2, &i64::equivalent_datatype());
        let n = buf.len() as mpi::Count;
        // SAFETY: `max_loc_op` reads and writes `len` pairs of the two-word datatype
        // it is used with here, and never panics.
        let op = unsafe { UnsafeUserOperation::commutative(max_loc_op) };
        // SAFETY: `n` elements of the two-word datatype cover exactly the 2n words.
        let (sv, mut rv) = unsafe {
            (
                View::with_count_and_datatype(&send[..], n, &pair),
                MutView::with_count_and_datatype(&mut recv[..], n, &pair),
            )
        };
        comm.all_reduce_into(&sv, &mut rv, &op);
        for (p, w) in buf.iter_mut().zip(recv.chunks_exact(2)) {
            *p = MaxLoc::new(f64::from_bits(w[0] as u64), w[1]);
        }
        self.time += t.elapsed();
        self.all_reduces += 1;
        self.bytes += size_of_val(&send[..]);
    }

    /// The forward's collectives: MAX of the row maxima (the max-location reduction
    /// of the `(max, argmax)` pairs when the statistics carry the per-row outputs)
    /// and one packed SUM of the row sums over the tensor-parallel group, then, when
    /// `mean` and the rows are split across data-parallel ranks, a SUM of the counts
    /// over that group. Returns the counts to finish with.
    pub fn reduce(&mut self, stats: &mut ShardStats, mean: bool) -> [f64; 2] {
        self.reduce_rows(stats);
        let mut counts = stats.counts();
        if mean {
            self.sum_counts(&mut counts);
        }
        counts
    }

    /// The two all-reduces of `stats`'s rows over the tensor-parallel group: MAX of
    /// the row maxima (max-location with the per-row outputs), then one packed SUM.
    fn reduce_rows(&mut self, stats: &mut ShardStats) {
        let g = self.groups;
        if stats.sums_per_row() == 4 {
            self.all_reduce(&g.tp, stats.max_mut(), SystemOperation::max());
        } else {
            self.all_reduce_max_loc(&g.tp, stats.max_loc_mut());
        }
        self.all_reduce(&g.tp, stats.sums_mut(), SystemOperation::sum());
    }

    /// SUM of a mean's counts over the data-parallel group (nothing with one group).
    fn sum_counts(&mut self, counts: &mut [f64; 2]) {
        let g = self.groups;
        if g.dp_size > 1 {
            self.all_reduce(&g.dp, counts, SystemOperation::sum());
        }
    }

    /// SUM of `buf` over the tensor-parallel group (`∂h` of the linear form, in its
    /// own type).
    pub fn sum_tp<X: Equivalence + Copy>(&mut self, buf: &mut [X]) {
        let g = self.groups;
        self.all_reduce(&g.tp, buf, SystemOperation::sum());
    }
}

/// The collectives of the one-pass linear cross-entropy
/// ([`xent::linear_cross_entropy_shard_into`]): at the start, one agreement over the
/// world that every rank passed the library's checks (a rank that failed them agrees
/// with [`Groups::agree`] in its place, and every rank returns the agreed failure)
/// and, for a mean, the SUM of the counts over the data-parallel group; per row block,
/// the MAX (or max-location) and the packed SUM of [`VocabParallel::reduce`] over the
/// tensor-parallel group.
pub struct OnePass<'v, 'g> {
    vp: &'v mut VocabParallel<'g>,
    /// The failure agreed at the start, when some rank failed the checks.
    pub failed: Option<Agreed>,
}

impl<'v, 'g> OnePass<'v, 'g> {
    /// The collectives of one call, counted in `vp`.
    pub fn new(vp: &'v mut VocabParallel<'g>) -> Self {
        OnePass { vp, failed: None }
    }
}

impl ShardReduce for OnePass<'_, '_> {
    fn start(&mut self, counts: Option<&mut [f64; 2]>) -> xent::Result<()> {
        if let Err(agreed) = self.vp.groups.agree(Ok(())) {
            self.failed = Some(agreed);
            return Err(xent::Error::InvalidArgument {
                name: "ranks",
                value: "a rank that failed its checks".to_string(),
                expected: "every rank past its checks",
            });
        }
        if let Some(c) = counts {
            self.vp.sum_counts(c);
        }
        Ok(())
    }

    fn block(&mut self, stats: &mut ShardStats) -> xent::Result<()> {
        self.vp.reduce_rows(stats);
        Ok(())
    }
}

/// The MPI user function of the max-location all-reduce: `inout[i] =
/// inout[i].max(in[i])` over `*len` pairs of two words (an `f64`'s bits, an `i64`),
/// the layout of the `repr(C)` [`MaxLoc`].
///
/// # Safety
/// `invec` and `inout` hold `*len` such pairs each, 8-byte aligned (MPI's contract
/// for the datatype of [`VocabParallel::all_reduce_max_loc`]).
unsafe extern "C" fn max_loc_op(
    invec: *mut c_void,
    inout: *mut c_void,
    len: *mut c_int,
    _datatype: *mut mpi::ffi::MPI_Datatype,
) {
    // SAFETY: the caller's contract; every bit pattern is a valid MaxLoc, and the
    // buffers are distinct (MPI's).
    unsafe {
        let n = usize::try_from(*len).unwrap_or(0);
        let a = std::slice::from_raw_parts(invec as *const MaxLoc, n);
        let b = std::slice::from_raw_parts_mut(inout as *mut MaxLoc, n);
        MaxLoc::reduce_into(b, a);
    }
}

/// The `index`-th of `parts` contiguous, even ranges of `0..len`: `(start, end)`.
pub fn even_range(len: usize, parts: usize, index: usize) -> (usize, usize) {
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    (start, start + base + usize::from(index < extra))
}

/// Gathers `local` (this rank's part, `counts[r]` elements on world rank `r`) on
/// world rank 0, in rank order; `None` elsewhere.
pub fn gather_world(g: &Groups, local: &[f64], counts: &[usize]) -> Option<Vec<f64>> {
    gather(&g.world, local, counts)
}

/// [`gather_world`] over `comm`, on its rank 0.
pub fn gather(comm: &SimpleCommunicator, local: &[f64], counts: &[usize]) -> Option<Vec<f64>> {
    let root = comm.process_at_rank(0);
    if comm.rank() == 0 {
        let total: usize = counts.iter().sum();
        let mut buf = vec![0.0f64; total];
        let c: Vec<mpi::Count> = counts.iter().map(|&n| n as mpi::Count).collect();
        let displs: Vec<mpi::Count> = c
            .iter()
            .scan(0, |acc, &n| {
                let at = *acc;
                *acc += n;
                Some(at)
            })
            .collect();
        {
            let mut part = mpi::datatype::PartitionMut::new(&mut buf[..], c, &displs[..]);
            root.gather_varcount_into_root(local, &mut part);
        }
        Some(buf)
    } else {
        root.gather_varcount_into(local);
        None
    }
}

/// SUM of `local` over `comm` on its rank 0; `None` elsewhere.
pub fn reduce_sum(comm: &SimpleCommunicator, local: &[f64]) -> Option<Vec<f64>> {
    let root = comm.process_at_rank(0);
    if comm.rank() == 0 {
        let mut out = vec![0.0f64; local.len()];
        root.reduce_into_root(local, &mut out[..], SystemOperation::sum());
        Some(out)
    } else {
        root.reduce_into(local, SystemOperation::sum());
        None
    }
}
