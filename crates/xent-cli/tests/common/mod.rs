//! Helpers shared by the CLI's integration tests: running the binary, `.npy` files in
//! temporary directories, and the checks of a failure (exit code 2, one line on
//! stderr, no output file).
#![allow(dead_code)]

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use npyz::{AutoSerialize, NpyFile, Order, WriterBuilder};
use tempfile::TempDir;

/// Runs the `xent` binary with `args`.
pub fn xent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(args)
        .output()
        .expect("the xent binary runs")
}

/// The stdout of a successful run.
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "xent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Writes a C-order `.npy` file.
pub fn write_npy<T: AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    write_npy_order(path, shape, data, Order::C);
}

/// Writes a `.npy` file in the given order.
pub fn write_npy_order<T: AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
    order: Order,
) {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .order(order)
        .writer(File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Reads a float `.npy` file: its shape, dtype descr and values widened to `f64`.
pub fn read_npy(path: &Path) -> (Vec<u64>, String, Vec<f64>) {
    let npy = NpyFile::new(BufReader::new(File::open(path).unwrap())).unwrap();
    let shape = npy.shape().to_vec();
    let descr = match npy.dtype() {
        npyz::DType::Plain(ty) => ty.to_string(),
        other => other.descr(),
    };
    let values = if descr.contains("f4") {
        npy.into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    } else {
        npy.into_vec::<f64>().unwrap()
    };
    (shape, descr, values)
}

/// Elementwise `|got − want| ≤ tol`.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "[{i}]: {g} vs {w} (tol {tol}); {got:?}"
        );
    }
}

/// A temporary directory with paths in it.
pub struct Dir(pub TempDir);

impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    pub fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

/// Asserts a failure: exit code 2, nothing on stdout, one `xent: error:` line on
/// stderr containing `needle`, and none of `outputs` on disk.
pub fn assert_fails(out: &Output, needle: &str, outputs: &[PathBuf]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("xent: error: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    for p in outputs {
        assert!(!p.exists(), "{} was written", p.display());
    }
}

/// Runs `xent loss <loss> --input x.npy --target t.npy --out l.npy --grad-out g.npy
/// <extra>` in `dir` and expects a failure mentioning `needle`.
pub fn fails_with(dir: &Dir, loss: &str, extra: &[&str], needle: &str) {
    let (l, g) = (dir.s("l.npy"), dir.s("g.npy"));
    let (x, t) = (dir.s("x.npy"), dir.s("t.npy"));
    let mut args = vec!["loss", loss, "--input", &x, "--target", &t, "--out", &l];
    args.extend(["--grad-out", &g]);
    args.extend(extra);
    assert_fails(
        &xent(&args),
        needle,
        &[dir.path("l.npy"), dir.path("g.npy")],
    );
    // No temporary file is left behind either.
    let left: Vec<_> = std::fs::read_dir(dir.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
