//! Regression tests for the hostile command lines: `.npy` headers whose
//! shapes overflow or whose data is missing, a linear cross-entropy with `D = 0` or an
//! empty `(2⁴⁰, 0)` weight, and outputs that would have lost a user's file (a
//! directory among the outputs, an output that is an input, two paths to one file,
//! a device). Each must exit 2 with one line on stderr in well under a second, and
//! leave every file exactly as it was, or compute the legal answer.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

/// A version 1.0 `.npy` file with a literal header (shape written as Python text, so
/// that it may say anything) and raw data bytes.
fn raw_npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((header.len() as u16).to_le_bytes());
    v.extend(header.as_bytes());
    v.extend(data);
    v
}

/// Runs `xent` and returns its output and how long it took.
fn timed(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = xent(args);
    (out, t.elapsed())
}

/// Every file in `dir` with its content, sorted.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let content = if e.file_type().unwrap().is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.file_name().into_string().unwrap(), content)
        })
        .collect();
    v.sort();
    v
}

/// A failure in under a second (hostile shapes must not run for minutes).
fn fails_fast(args: &[&str], needle: &str, outputs: &[PathBuf]) {
    let (out, took) = timed(args);
    assert_fails(&out, needle, outputs);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn zero_class_dim_with_wrapping_rows_is_refused_by_the_reader() {
    let dir = Dir::new();
    for (x_shape, t_shape) in [
        ("(2, 0, 9223372036854775808)", "(2, 9223372036854775808)"),
        ("(4294967296, 0, 4294967296)", "(4294967296, 4294967296)"),
    ] {
        fs::write(dir.path("x.npy"), raw_npy("<f8", false, x_shape, &[])).unwrap();
        fs::write(dir.path("t.npy"), raw_npy("<i8", false, t_shape, &[])).unwrap();
        let before = listing(dir.0.path());
        for loss in ["cross-entropy", "nll", "js", "kl-div", "bce"] {
            let args = [
                "loss",
                loss,
                "--input",
                &dir.s("x.npy"),
                "--target",
                &dir.s("t.npy"),
                "--out",
                &dir.s("l.npy"),
            ];
            fails_fast(
                &args,
                "has more elements than fit in memory",
                &[dir.path("l.npy")],
            );
        }
        assert_eq!(listing(dir.0.path()), before);
    }
}

#[test]
fn headers_announcing_more_data_than_the_file_holds_fail_before_allocating() {
    let dir = Dir::new();
    write_npy(&dir.path("t.npy"), &[2], &[0i64, 1]);
    for (shape, data, needle) in [
        (
            "(1099511627776,)",
            vec![0u8; 8],
            "needs 8796093022208 bytes of data, the file has 8",
        ),
        (
            "(2, 3)",
            vec![0u8; 40],
            "needs 48 bytes of data, the file has 40",
        ),
        (
            "(2, 3)",
            vec![0u8; 56],
            "needs 48 bytes of data, the file has 56",
        ),
        ("(-2, 3)", vec![], "not a non-negative integer"),
        ("(99999999999999999999999, 0)", vec![], "exceeds usize"),
        ("[2, 3]", vec![0u8; 48], "shape is not a tuple"),
    ] {
        fs::write(dir.path("x.npy"), raw_npy("<f8", false, shape, &data)).unwrap();
        let args = [
            "loss",
            "cross-entropy",
            "--input",
            &dir.s("x.npy"),
            "--target",
            &dir.s("t.npy"),
        ];
        fails_fast(&args, needle, &[]);
    }
    // A header longer than NumPy accepts, and one nested past any dtype.
    let mut long = b"\x93NUMPY\x02\x00".to_vec();
    long.extend(u32::MAX.to_le_bytes());
    fs::write(dir.path("x.npy"), long).unwrap();
    let x = dir.s("x.npy");
    let t = dir.s("t.npy");
    let args = ["loss", "cross-entropy", "--input", &x, "--target", &t];
    fails_fast(&args, "longer than the 10000 accepted", &[]);
    let deep = format!("{}2{}", "(".repeat(1000), ")".repeat(1000));
    fs::write(dir.path("x.npy"), raw_npy("<f8", false, &deep, &[])).unwrap();
    fails_fast(&args, "nested deeper than", &[]);
}

#[test]
fn linear_cross_entropy_with_zero_hidden_dim_computes() {
    let dir = Dir::new();
    for n in [6u64, 8, 9] {
        write_npy(&dir.path("h.npy"), &[n, 0], &[] as &[f32]);
        write_npy(&dir.path("w.npy"), &[3, 0], &[] as &[f32]);
        let y: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        write_npy(&dir.path("t.npy"), &[n], &y);
        let (h, w, t, gb) = (
            dir.s("h.npy"),
            dir.s("w.npy"),
            dir.s("t.npy"),
            dir.s("gb.npy"),
        );
        let args = [
            "loss",
            "linear-cross-entropy",
            "--hidden",
            &h,
            "--weight",
            &w,
            "--target",
            &t,
            "--grad-out-bias",
            &gb,
        ];
        let text = stdout(&xent(&args));
        let loss: f64 = text.trim().parse().unwrap();
        assert!((loss - 3f64.ln()).abs() < 1e-6, "n = {n}: {text}");
        // db = Σ_rows (1/3 − onehot(y_r)) / n.
        let (_, _, db) = read_npy(&dir.path("gb.npy"));
        let want: Vec<f64> = (0..3)
            .map(|c| (n as f64 / 3.0 - y.iter().filter(|&&t| t == c).count() as f64) / n as f64)
            .collect();
        assert_close(&db, &want, 1e-6);
        fs::remove_file(dir.path("gb.npy")).unwrap();
    }
}

#[test]
fn linear_cross_entropy_with_an_empty_huge_weight_fails_fast() {
    let dir = Dir::new();
    write_npy(&dir.path("h.npy"), &[1, 0], &[] as &[f32]);
    write_npy(&dir.path("t.npy"), &[1], &[0i64]);
    let (h, w, t, l, gb) = (
        dir.s("h.npy"),
        dir.s("w.npy"),
        dir.s("t.npy"),
        dir.s("l.npy"),
        dir.s("gb.npy"),
    );
    for (shape, needle) in [
        (
            "(1099511627776, 0)",
            "cannot allocate logits block of shape [1, 1099511627776] (4398046511104 bytes): out of memory",
        ),
        (
            "(4611686018427387904, 0)",
            "cannot allocate logits block of shape [1, 4611686018427387904]: its size overflows the address space",
        ),
    ] {
        fs::write(dir.path("w.npy"), raw_npy("<f4", false, shape, &[])).unwrap();
        let args = [
            "loss",
            "linear-cross-entropy",
            "--hidden",
            &h,
            "--weight",
            &w,
            "--target",
            &t,
            "--out",
            &l,
        ];
        fails_fast(&args, needle, &[dir.path("l.npy")]);
        // With the bias gradient, the CLI's own buffer is the first to fail.
        let mut with_bias = args.to_vec();
        with_bias.extend(["--grad-out-bias", &gb]);
        fails_fast(
            &with_bias,
            "cannot allocate grad bias of shape",
            &[dir.path("l.npy"), dir.path("gb.npy")],
        );
    }
}

/// The classic problem, with a pre-existing `l.npy` holding `old`.
fn classic_with_old_output(dir: &Dir) {
    write_npy(
        &dir.path("x.npy"),
        &[3, 3],
        &[1.0f64, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
    );
    write_npy(&dir.path("t.npy"), &[3], &[2i64, 1, 0]);
    fs::write(dir.path("l.npy"), b"old").unwrap();
}

fn ce(dir: &Dir, extra: &[&str]) -> Output {
    let (x, t) = (dir.s("x.npy"), dir.s("t.npy"));
    let mut args = vec!["loss", "cross-entropy", "--input", &x, "--target", &t];
    args.extend(extra);
    xent(&args)
}

#[test]
fn an_existing_output_survives_a_directory_among_the_outputs() {
    let dir = Dir::new();
    classic_with_old_output(&dir);
    fs::create_dir(dir.path("gdir")).unwrap();
    let before = listing(dir.0.path());
    let (l, g) = (dir.s("l.npy"), dir.s("gdir"));
    let out = ce(&dir, &["--out", &l, "--grad-out", &g]);
    assert_fails(&out, "it exists and is a directory", &[]);
    assert_eq!(listing(dir.0.path()), before);
    // A path ending in a separator is no file name either.
    let g = format!("{}/", dir.s("new"));
    let out = ce(&dir, &["--out", &l, "--grad-out", &g]);
    assert_fails(&out, "not a file name", &[dir.path("new")]);
    assert_eq!(listing(dir.0.path()), before);
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = Dir::new();
    classic_with_old_output(&dir);
    let before = listing(dir.0.path());
    let (x, t) = (dir.s("x.npy"), dir.s("t.npy"));
    let unwritable = dir.s("missing-dir/g.npy");
    // --out == --input with a --grad-out that cannot be written: the input stays.
    let out = ce(&dir, &["--out", &x, "--grad-out", &unwritable]);
    assert_fails(&out, "--input and --out both name", &[]);
    assert_eq!(listing(dir.0.path()), before);
    let out = ce(&dir, &["--out", &x]);
    assert_fails(&out, "--input and --out both name", &[]);
    let out = ce(&dir, &["--grad-out", &t]);
    assert_fails(&out, "--target and --grad-out both name", &[]);
    // Through another spelling of the same path.
    fs::create_dir(dir.path("d")).unwrap();
    let before = listing(dir.0.path());
    let other = format!("{}/d/../x.npy", dir.0.path().display());
    let out = ce(&dir, &["--out", &other]);
    assert_fails(&out, "(the input", &[]);
    assert_eq!(listing(dir.0.path()), before);
    // An unwritable --grad-out alone leaves the existing --out as it was.
    let l = dir.s("l.npy");
    let out = ce(&dir, &["--out", &l, "--grad-out", &unwritable]);
    assert_fails(&out, "is not there", &[]);
    assert_eq!(listing(dir.0.path()), before);
}

#[cfg(unix)]
#[test]
fn two_paths_to_one_file_are_one_output() {
    let dir = Dir::new();
    classic_with_old_output(&dir);
    std::os::unix::fs::symlink(".", dir.path("sub")).unwrap();
    let before = listing(dir.0.path());
    let (l, l2) = (dir.s("l.npy"), dir.s("sub/l.npy"));
    // Existing: same device and inode.
    let out = ce(&dir, &["--out", &l, "--grad-out", &l2]);
    assert_fails(&out, "--out and --grad-out both name", &[]);
    assert_eq!(listing(dir.0.path()), before);
    // New: same canonical directory and name.
    let (n, n2) = (dir.s("new.npy"), dir.s("sub/new.npy"));
    let out = ce(&dir, &["--out", &n, "--grad-out", &n2]);
    assert_fails(
        &out,
        "--out and --grad-out both name",
        &[dir.path("new.npy")],
    );
    // A hard link is the same file too.
    fs::hard_link(dir.path("l.npy"), dir.path("l2.npy")).unwrap();
    let before = listing(dir.0.path());
    let l2 = dir.s("l2.npy");
    let out = ce(&dir, &["--out", &l, "--grad-out", &l2]);
    assert_fails(&out, "--out and --grad-out both name", &[]);
    assert_eq!(listing(dir.0.path()), before);
}

#[cfg(unix)]
#[test]
fn outputs_that_are_not_regular_files_are_refused() {
    let dir = Dir::new();
    classic_with_old_output(&dir);
    // A FIFO, when mkfifo exists here.
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path("fifo"))
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let f = dir.s("fifo");
        assert_fails(&ce(&dir, &["--out", &f]), "it exists and is a FIFO", &[]);
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(dir.path("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
    }
    // A character device, directly and through a symbolic link: refused, not replaced.
    use std::os::unix::fs::FileTypeExt;
    if fs::metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device()) {
        std::os::unix::fs::symlink("/dev/null", dir.path("null")).unwrap();
        for p in ["/dev/null".to_string(), dir.s("null")] {
            let out = ce(&dir, &["--out", &p]);
            assert_fails(&out, "it exists and is a character device", &[]);
            assert!(fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device());
        }
    }
    // A dangling symbolic link.
    std::os::unix::fs::symlink(dir.path("nowhere"), dir.path("dangling")).unwrap();
    let d = dir.s("dangling");
    assert_fails(
        &ce(&dir, &["--out", &d]),
        "symbolic link to a missing file",
        &[],
    );
    assert!(!dir.path("nowhere").exists());
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_to_a_regular_file_is_written_through() {
    let dir = Dir::new();
    classic_with_old_output(&dir);
    std::os::unix::fs::symlink("l.npy", dir.path("link.npy")).unwrap();
    let link = dir.s("link.npy");
    stdout(&ce(&dir, &["--out", &link]));
    assert!(fs::symlink_metadata(dir.path("link.npy"))
        .unwrap()
        .file_type()
        .is_symlink());
    let (shape, _, v) = read_npy(&dir.path("l.npy"));
    assert!(shape.is_empty() && (v[0] - 1.4076059644443804).abs() < 1e-12);
}

#[test]
fn a_successful_run_replaces_existing_outputs_and_leaves_no_temporaries() {
    let dir = Dir::new();
    classic_with_old_output(&dir);
    let (l, g) = (dir.s("l.npy"), dir.s("g.npy"));
    stdout(&ce(&dir, &["--out", &l, "--grad-out", &g]));
    let names: Vec<_> = listing(dir.0.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["g.npy", "l.npy", "t.npy", "x.npy"]);
    assert_eq!(read_npy(&dir.path("l.npy")).0, Vec::<u64>::new());
}

/// SIGTERM at any moment of a large run: no temporary is left, and the old output
/// is either untouched or wholly replaced (never missing, never partial).
#[cfg(unix)]
#[test]
fn sigterm_during_a_large_write_leaves_no_temporaries() {
    let dir = Dir::new();
    // 4M f32 logits (16 MiB), gradient of the same size.
    let (n, c) = (4096u64, 1024u64);
    let x: Vec<f32> = (0..n * c).map(|i| (i % 7) as f32).collect();
    write_npy(&dir.path("x.npy"), &[n, c], &x);
    write_npy(&dir.path("t.npy"), &[n], &vec![1i64; n as usize]);
    let (xp, tp, l, g) = (
        dir.s("x.npy"),
        dir.s("t.npy"),
        dir.s("l.npy"),
        dir.s("g.npy"),
    );
    let args = [
        "loss",
        "cross-entropy",
        "--input",
        &xp,
        "--target",
        &tp,
        "--out",
        &l,
        "--grad-out",
        &g,
    ];
    let mut interrupted = 0;
    for delay_ms in [0u64, 20, 50, 100, 150, 200, 300, 400, 600] {
        fs::write(dir.path("l.npy"), b"old l").unwrap();
        fs::write(dir.path("g.npy"), b"old g").unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xent"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        if !status.success() {
            interrupted += 1;
        }
        let names: Vec<_> = listing(dir.0.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["g.npy", "l.npy", "t.npy", "x.npy"],
            "after {delay_ms} ms ({status})"
        );
        let (l_old, g_old) = (
            fs::read(dir.path("l.npy")).unwrap() == b"old l",
            fs::read(dir.path("g.npy")).unwrap() == b"old g",
        );
        if status.success() {
            assert!(!l_old && !g_old);
            assert_eq!(read_npy(&dir.path("g.npy")).2.len(), (n * c) as usize);
        } else {
            // Interrupted: all old or (the signal after the last rename) all new.
            assert_eq!(l_old, g_old, "after {delay_ms} ms: a half-done transaction");
            if !g_old {
                assert_eq!(read_npy(&dir.path("g.npy")).2.len(), (n * c) as usize);
            }
        }
    }
    assert!(interrupted > 0, "no run was interrupted");
}
