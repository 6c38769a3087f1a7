//! `xent-mpi` when things go wrong around it: a rank killed while rank 0 writes,
//! ranks that read different files, a bad command line, a FIFO as an input.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{launcher, mpirun, one_mpirun, write, XENT_MPI};

/// The lines `xent-mpi` itself printed as errors.
fn our_errors(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("xent-mpi: error:"))
        .map(str::to_string)
        .collect()
}

/// Waits for `child` for at most `limit`; kills it (and says so) past that.
fn wait_at_most(mut child: Child, limit: Duration) -> (Output, bool) {
    let start = Instant::now();
    let mut timed_out = false;
    while child
        .try_wait()
        .expect("mpirun can be waited for")
        .is_none()
    {
        if start.elapsed() > limit {
            // SIGTERM first: mpirun passes it on to the ranks it started.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (
        child.wait_with_output().expect("mpirun's output"),
        timed_out,
    )
}

/// A `.npy` file of `rows × cols` zeros in `float32`, written without a per-element
/// encoder (the kill test needs a large one quickly).
fn zeros_f32(dir: &Path, name: &str, rows: usize, cols: usize) -> std::path::PathBuf {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + rows * cols * 4, 0);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The pid of an `xent-mpi` process that holds a file open for writing in `dir`
/// that is not one of its inputs (named `.*.xent-*.tmp`, or unnamed: `(deleted)`).
fn writer_in(dir: &Path) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() != "xent-mpi" {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if target.starts_with(dir) && (t.ends_with(".tmp") || t.ends_with("(deleted)")) {
                return Some(pid);
            }
        }
    }
    None
}

/// Issue 31, item 8: a rank killed by SIGKILL while rank 0 writes the (large)
/// gradient leaves no hidden full-size temporary beside the outputs.
#[test]
fn a_sigkill_during_the_write_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let (n, c) = (256usize, 32768usize); // a 32 MiB gradient
    let x = zeros_f32(dir.path(), "x.npy", n, c);
    let t = write(dir.path(), "t.npy", &[n], &vec![1i64; n]);
    let g = dir.path().join("g.npy");
    let out = dir.path().join("l.npy");
    std::fs::write(&g, b"the old gradient").unwrap();
    let _lock = one_mpirun();
    let mut caught = false;
    // The write is short: try again until a kill lands inside it.
    for _attempt in 0..5 {
        let mut cmd = launcher();
        cmd.args(["-n", "2", XENT_MPI, "loss", "cross-entropy", "--input"])
            .arg(&x)
            .arg("--target")
            .arg(&t)
            .arg("--grad-out")
            .arg(&g)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("mpirun runs");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Some(pid) = writer_in(dir.path()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                caught = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        // mpirun sees its rank die and ends the others.
        let (_, timed_out) = wait_at_most(child, Duration::from_secs(60));
        assert!(!timed_out, "mpirun did not end after its rank was killed");
        if caught {
            break;
        }
        // It finished before the kill: put the old gradient back and go again.
        std::fs::write(&g, b"the old gradient").unwrap();
        let _ = std::fs::remove_file(&out);
    }
    assert!(caught, "no kill landed while rank 0 was writing");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".xent-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The old output is kept whole (or the new one is complete).
    let kept = std::fs::read(&g).unwrap();
    assert!(
        kept == b"the old gradient" || kept.len() > n * c * 4,
        "{}",
        kept.len()
    );
}

/// Issue 31, item 9: ranks that read different files (here: different arguments per
/// rank, as a stale copy on one node would give) fail on every rank with one line,
/// before any collective that depends on the shapes.
#[test]
fn ranks_that_read_different_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, shape: &[usize]| {
        let len = shape.iter().product::<usize>();
        let v: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
        write(dir.path(), name, shape, &v)
    };
    let x45 = p("x45.npy", &[4, 5]);
    let x35 = p("x35.npy", &[3, 5]);
    let x46 = p("x46.npy", &[4, 6]);
    let t4 = write(dir.path(), "t4.npy", &[4], &[0i64, 1, 2, 3]);
    let t3 = write(dir.path(), "t3.npy", &[3], &[0i64, 1, 2]);
    let w5 = p("w5.npy", &[5, 3]);
    let w6 = p("w6.npy", &[6, 3]);
    let h = p("h.npy", &[4, 3]);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let ce = |x: &Path, t: &Path| -> Vec<String> {
        ["loss", "cross-entropy", "--input", &s(x), "--target", &s(t)]
            .map(String::from)
            .to_vec()
    };
    let lin = |w: &Path| -> Vec<String> {
        [
            "loss",
            "linear-cross-entropy",
            "--hidden",
            &s(&h),
            "--weight",
            &s(w),
            "--target",
            &s(&t4),
        ]
        .map(String::from)
        .to_vec()
    };
    // Different N (was an MPI_ERR_TRUNCATE abort), the same N with a different C (was
    // exit 0 with a wrong loss), and a linear head with a different V.
    for (first, second, want) in [
        (ce(&x45, &t4), ce(&x35, &t3), "input float32 [3, 5]"),
        (ce(&x45, &t4), ce(&x46, &t4), "input float32 [4, 6]"),
        (lin(&w5), lin(&w6), "weight float32 [6, 3]"),
    ] {
        let _lock = one_mpirun();
        let mut cmd = launcher();
        cmd.args(["-n", "1", XENT_MPI])
            .args(&first)
            .args([":", "-n", "1", XENT_MPI])
            .args(&second);
        let o = cmd.output().expect("mpirun runs");
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ours = our_errors(&o);
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(
            ours[0].contains("the ranks read different inputs") && ours[0].contains(want),
            "{ours:?}"
        );
    }
}

/// Issue 31, item 10: a command-line error is printed once, not by every rank.
#[test]
fn a_parse_error_is_printed_once() {
    let o = mpirun(3, &["loss", "cross-entropy", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let copies = stderr
        .lines()
        .filter(|l| l.contains("unexpected argument '--no-such-flag'"))
        .count();
    assert_eq!(copies, 1, "{stderr}");
}

/// Issue 31, item 10: a FIFO as an input is refused with one clear line (every rank
/// would open it, and all but one block forever).
#[test]
fn a_fifo_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(dir.path(), "x.npy", &[2, 5], &[0.5f32; 10]);
    let fifo = dir.path().join("t.npy");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let _lock = one_mpirun();
    let mut cmd = launcher();
    cmd.args(["-n", "2", XENT_MPI, "loss", "cross-entropy", "--input"])
        .arg(&x)
        .arg("--target")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (o, timed_out) = wait_at_most(cmd.spawn().unwrap(), Duration::from_secs(60));
    assert!(!timed_out, "blocked on the FIFO");
    assert_eq!(o.status.code(), Some(2));
    let want = format!(
        "xent-mpi: error: cannot read --target {}: it is a FIFO; only regular files are read",
        fifo.display()
    );
    assert_eq!(our_errors(&o), [want]);
}
