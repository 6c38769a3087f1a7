//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), also replayed
//! over the committed seed corpus by `tests/fuzz_corpus.rs`, so that plain
//! `cargo test` runs them on stable Rust.
//!
//! Each body must never panic, abort or hang on any input; it also asserts what must
//! hold when the input is accepted, so that a wrong answer is a crash too.

use std::fs;
use std::path::Path;

use xent::{KlReduction, Reduction};

use crate::args::{
    ClassArgs, CrossEntropyArgs, FileArgs, LinearArgs, LogitArgs, LossCommand, RowArgs,
    RowOutputArgs,
};
use crate::loss;
use crate::npy::{self, Data};
use crate::Failure;

/// The `.npy` reader on arbitrary bytes. When it accepts them, the array has as many
/// elements as its shape says, and a float array survives a write and a read
/// bit for bit (NaN payloads included).
pub fn npy(data: &[u8]) {
    let Ok(a) = npy::from_bytes(data, "fuzz.npy") else {
        return;
    };
    // The reader checked that the product of the nonzero dims fits.
    assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
    match &a.data {
        Data::F32(v) => {
            let back = npy::from_bytes(&npy::encode(&a.shape, v).expect("encodes"), "back")
                .expect("reads back");
            let Data::F32(w) = back.data else {
                panic!("f32 read back as {}", back.data.dtype())
            };
            assert_eq!(back.shape, a.shape);
            assert!(v.iter().zip(&w).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        Data::F64(v) => {
            let back = npy::from_bytes(&npy::encode(&a.shape, v).expect("encodes"), "back")
                .expect("reads back");
            let Data::F64(w) = back.data else {
                panic!("f64 read back as {}", back.data.dtype())
            };
            assert_eq!(back.shape, a.shape);
            assert!(v.iter().zip(&w).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        _ => {}
    }
}

/// Separates the `.npy` files in a [`cli`] input.
pub const FILE_SEPARATOR: &[u8] = b"\nXENTFILE\n";

/// The bytes before the first file in a [`cli`] input: the subcommand and its options.
pub const OPTION_BYTES: usize = 36;

/// Shapes with more elements than this (nonzero dims) are skipped by [`cli`]: they
/// are legal, and their work or memory (a `(2³⁰, 0)` weight asks for 2³⁰ logits per
/// row) would read as a hang or an out-of-memory crash to the fuzzer. The hostile
/// large shapes have their own regression tests.
pub const MAX_FUZZ_ELEMENTS: u128 = 1 << 16;

fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// The `xent loss` path from parsed arguments to the library and the output files,
/// on arbitrary bytes: [`OPTION_BYTES`] bytes of options, then up to six `.npy` files
/// separated by [`FILE_SEPARATOR`], written into the empty directory `dir` (removed
/// again after the run).
///
/// Option bytes: `[0]` the loss (`% 7`: cross-entropy, nll, bce, bce-with-logits,
/// kl-div, js, linear-cross-entropy), `[1]` the reduction (`% 4`, 3 = batchmean for
/// kl-div), `[2]` bits: 1 `--out`, 2 `--grad-out` (`--grad-out-hidden`), 4
/// `--grad-out-target` (`--grad-out-weight`), 8 `--grad-out-bias`, 16 `--json`, 32
/// `--log-target`/`--logits`, 64 a soft-cap, 128 the per-row outputs of
/// cross-entropy with `--denominator` (the z-loss bytes) and, without a soft-cap,
/// `--logit-scale` (the soft-cap bytes); `[3]` which files are optional inputs
/// (bits 1, 2, 4, 8 for files 3 to 6); `[4..12]` `ignore_index` (i64 LE), `[12..20]`
/// `label_smoothing`, `[20..28]` `z_loss`, `[28..36]` the soft-cap (f64 bits LE).
/// Files: input (hidden), target, weight (`W` for linear), grad_output, pos_weight
/// (bias), class weight (linear).
///
/// On failure no output file may exist; on success each one asked for must exist
/// and read back. Returns whether the run succeeded (`None`: the input was skipped).
pub fn cli(data: &[u8], dir: &Path) -> Option<bool> {
    if data.len() < OPTION_BYTES {
        return None;
    }
    let (opt, rest) = data.split_at(OPTION_BYTES);
    let mut files: Vec<&[u8]> = Vec::new();
    let mut rest = rest;
    while files.len() < 6 {
        match rest
            .windows(FILE_SEPARATOR.len())
            .position(|w| w == FILE_SEPARATOR)
        {
            Some(i) => {
                files.push(&rest[..i]);
                rest = &rest[i + FILE_SEPARATOR.len()..];
            }
            None => {
                files.push(rest);
                break;
            }
        }
    }
    let too_big = files.iter().any(|f| {
        npy::from_bytes(f, "f").is_ok_and(|a| {
            a.shape
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
                .is_some_and(|n| n > MAX_FUZZ_ELEMENTS)
        })
    });
    if too_big {
        return None;
    }
    let path = |i: usize| dir.join(format!("in{i}.npy"));
    for (i, f) in files.iter().enumerate() {
        fs::write(path(i), f).expect("the fuzz directory is writable");
    }
    let present = |i: usize| (i < files.len()).then(|| path(i));
    let optional = |i: usize| present(i).filter(|_| opt[3] & (1 << (i - 2)) != 0);
    let flag = |bit: u8| opt[2] & bit != 0;
    let out = |name: &str, bit: u8| flag(bit).then(|| dir.join(name));
    let reduction = match opt[1] % 3 {
        0 => Reduction::Mean,
        1 => Reduction::Sum,
        _ => Reduction::None,
    };
    let f64_at = |at: usize| f64::from_bits(u64::from_le_bytes(take(opt, at)));
    let rows = RowArgs {
        ignore_index: i64::from_le_bytes(take(opt, 4)),
        reduction,
        denominator: flag(128).then(|| f64_at(20)),
    };
    let logit = LogitArgs {
        label_smoothing: f64_at(12),
        z_loss: f64_at(20),
        softcap: flag(64).then(|| f64_at(28)),
        logit_scale: if flag(128) && !flag(64) {
            f64_at(28)
        } else {
            1.0
        },
    };
    let row_outputs = RowOutputArgs {
        lse_out: out("lse.npy", 128),
        entropy_out: out("entropy.npy", 128),
        argmax_out: out("argmax.npy", 128),
    };
    let (input, target) = (path(0), present(1).unwrap_or_else(|| path(0)));
    let outputs: Vec<_>;
    let cmd = if opt[0] % 7 == 6 {
        let req = LinearArgs {
            hidden: input,
            weight: present(2).unwrap_or_else(|| path(0)),
            bias: optional(4),
            target,
            class_weight: optional(5),
            rows,
            logit,
            row_outputs,
            scratch_mib: u64::from(opt[1] / 4),
            out: out("out.npy", 1),
            grad_out_hidden: out("gh.npy", 2),
            grad_out_weight: out("gw.npy", 4),
            grad_out_bias: out("gb.npy", 8),
            grad_output: optional(3),
            json: flag(16),
        };
        outputs = req
            .outputs()
            .iter()
            .filter_map(|(_, p)| p.map(Path::to_path_buf))
            .collect();
        LossCommand::LinearCrossEntropy(req)
    } else {
        let files = FileArgs {
            input,
            target,
            out: out("out.npy", 1),
            grad_out: out("g.npy", 2),
            grad_output: optional(3),
            json: flag(16),
        };
        let grad_out_target = out("gt.npy", 4);
        let class = |files| ClassArgs {
            files,
            weight: optional(2),
            rows: rows.clone(),
        };
        let kind = opt[0] % 7;
        let ce_rows = row_outputs.outputs().map(|(_, p)| p.map(Path::to_path_buf));
        outputs = [&files.out, &files.grad_out]
            .into_iter()
            .flatten()
            .cloned()
            .chain(grad_out_target.clone().filter(|_| kind >= 4))
            .chain(ce_rows.into_iter().flatten().filter(|_| kind == 0))
            .collect();
        match kind {
            0 => LossCommand::CrossEntropy(CrossEntropyArgs {
                class: class(files),
                logit,
                row_outputs,
            }),
            // nll has no logit options.
            1 => LossCommand::Nll(class(files)),
            2 => LossCommand::Bce {
                files,
                weight: optional(2),
                reduction,
            },
            3 => LossCommand::BceWithLogits {
                files,
                weight: optional(2),
                pos_weight: optional(4),
                reduction,
            },
            4 => LossCommand::KlDiv {
                files,
                log_target: flag(32),
                reduction: match opt[1] % 4 {
                    0 => KlReduction::Mean,
                    1 => KlReduction::Sum,
                    2 => KlReduction::None,
                    _ => KlReduction::BatchMean,
                },
                grad_out_target,
            },
            _ => LossCommand::Js {
                files,
                logits: flag(32),
                reduction,
                grad_out_target,
            },
        }
    };
    let result: Result<String, Failure> = loss::run(&cmd);
    match &result {
        Ok(_) => {
            for o in &outputs {
                npy::read(o).unwrap_or_else(|f| panic!("output {o:?}: {}", f.message()));
            }
        }
        Err(f) => {
            let msg = f.message();
            assert!(!msg.is_empty() && !msg.contains('\n'));
            for o in &outputs {
                assert!(!o.exists(), "{o:?} written by a failed run ({msg})");
            }
        }
    }
    // Nothing else may be left behind (no temporaries).
    for e in fs::read_dir(dir).expect("the fuzz directory is readable") {
        let e = e.expect("a directory entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let expected = name.starts_with("in") || outputs.iter().any(|o| o.ends_with(&name));
        assert!(expected, "left behind: {name}");
        let _ = fs::remove_file(e.path());
    }
    Some(result.is_ok())
}
