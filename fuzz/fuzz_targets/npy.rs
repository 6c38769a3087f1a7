//! The `.npy` reader on arbitrary bytes (see `xent_cli::fuzzing::npy`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xent_cli::fuzzing::npy(data));
