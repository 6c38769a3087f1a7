//! The fuzz targets' bodies (`xent_cli::fuzzing`) over every file of the committed
//! seed corpus (`fuzz/corpus/`), so that plain `cargo test` on stable Rust covers what
//! `cargo fuzz run` explores on nightly. A crash the fuzzer finds is added to the
//! corpus (and so replayed here) as well as to a named regression test.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: only {} seeds",
        dir.display(),
        files.len()
    );
    files
}

#[test]
fn npy_reader_over_the_corpus() {
    for (path, bytes) in corpus("npy") {
        eprintln!("{}", path.display());
        xent_cli::fuzzing::npy(&bytes);
    }
}

#[test]
fn cli_path_over_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (path, bytes) in corpus("cli") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match xent_cli::fuzzing::cli(&bytes, dir.path()) {
            Some(true) => ok.push(name),
            Some(false) => failed.push(name),
            None => {}
        }
    }
    // The harness reaches both ends: legal seeds compute, hostile ones fail.
    for legal in [
        "ce_classic",
        "ce_options",
        "kl",
        "js_logits",
        "linear",
        "linear_d0_n6",
    ] {
        assert!(ok.iter().any(|n| n == legal), "{legal} failed; ok: {ok:?}");
    }
    for hostile in ["ce_zero_class_wrap", "ce_nan_options", "ce_target_oob"] {
        assert!(
            failed.iter().any(|n| n == hostile),
            "{hostile} passed; failed: {failed:?}"
        );
    }
}
