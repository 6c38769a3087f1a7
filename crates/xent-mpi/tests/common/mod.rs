//! What the `mpirun` tests share: launching `xent-mpi` under `mpirun`, and writing
//! `.npy` files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// One `mpirun` at a time: the machine has few cores and the ranks oversubscribe.
static MPIRUN: Mutex<()> = Mutex::new(());

/// `mpirun -n p … xent-mpi args…`, with the flags CI needs (shared memory only,
/// oversubscription, and the root override when run as root).
pub fn mpirun(p: usize, args: &[&str]) -> Output {
    let _lock = MPIRUN.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = launcher();
    cmd.args(["-n", &p.to_string(), XENT_MPI]).args(args);
    cmd.output()
        .expect("mpirun runs (OpenMPI installed: scripts/test-mpi.sh)")
}

/// The `xent-mpi` binary under test.
pub const XENT_MPI: &str = env!("CARGO_BIN_EXE_xent-mpi");

/// `mpirun` with those flags, before its `-n P program args…` (or several, `:`-separated).
pub fn launcher() -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--oversubscribe", "--mca", "btl", "self,vader"]);
    if is_root() {
        cmd.arg("--allow-run-as-root");
    }
    cmd
}

/// Holds the one-`mpirun`-at-a-time lock.
pub fn one_mpirun() -> std::sync::MutexGuard<'static, ()> {
    MPIRUN.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn write<T: npyz::AutoSerialize + Copy>(
    dir: &Path,
    name: &str,
    shape: &[usize],
    v: &[T],
) -> PathBuf {
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Vec::new();
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}
