//! `xent loss` from its parsed arguments to the output files, on arbitrary options
//! and `.npy` files (see `xent_cli::fuzzing::cli`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One directory for the whole run, in memory where there is a tmpfs.
fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary directory")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let _ = xent_cli::fuzzing::cli(data, dir());
});
