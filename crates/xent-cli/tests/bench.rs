//! `xent bench --json --quick` on tiny shapes: the report's shape, never its speed.

use std::process::Command;

#[test]
fn bench_json_has_one_record_per_case_with_the_documented_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["bench", "--json", "--quick", "--threads", "2"])
        .args(["--shape", "64x10", "--shape", "2x3x4x5"])
        .output()
        .expect("xent runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // 2 shapes × {f32, bf16} × {fwd, fwd_bwd reuse, fwd_bwd fresh}.
    assert_eq!(records.len(), 12, "{text}");
    for r in &records {
        for key in [
            "shape",
            "dtype",
            "pass",
            "median_ms",
            "floor_ms",
            "ratio",
            "gbps",
            "alloc",
            "thp",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert!(r["median_ms"].as_f64().unwrap() >= 0.0);
        assert!(r["loss"].as_f64().unwrap().is_finite());
        assert_eq!(r["threads"], 2);
    }
    assert_eq!(records[0]["shape"], serde_json::json!([64, 10]));
    assert_eq!(records[11]["shape"], serde_json::json!([2, 3, 4, 5]));
    let passes: Vec<&str> = records
        .iter()
        .map(|r| r["pass"].as_str().unwrap())
        .collect();
    assert_eq!(passes[..3], ["fwd", "fwd_bwd", "fwd_bwd"]);
    let allocs: Vec<&str> = records
        .iter()
        .map(|r| r["alloc"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(allocs[..3], ["-", "reuse", "fresh"]);
    let dtypes: Vec<&str> = records
        .iter()
        .map(|r| r["dtype"].as_str().unwrap())
        .collect();
    assert_eq!(dtypes[..6], ["f32", "f32", "f32", "bf16", "bf16", "bf16"]);
}

#[test]
fn bench_rejects_a_bad_shape() {
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["bench", "--shape", "0x10"])
        .output()
        .expect("xent runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0x10"));
}

#[test]
fn bench_family_suite_reports_each_loss_and_pass() {
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["bench", "--suite", "family", "--json", "--quick"])
        .args(["--threads", "2", "--elems", "5000"])
        .output()
        .expect("xent runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let cases: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["op"].as_str().unwrap().into(),
                r["pass"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = ["bce", "bce-with-logits", "kl-div"]
        .iter()
        .flat_map(|op| ["fwd", "fwd_bwd"].map(|p| (op.to_string(), p.to_string())))
        .collect();
    assert_eq!(cases, want, "{text}");
    for r in &records {
        assert!(r["median_ms"].as_f64().unwrap() >= 0.0);
        assert!(r["floor_ms"].as_f64().unwrap() >= 0.0);
        assert!(r["loss"].as_f64().unwrap().is_finite(), "{r}");
        assert_eq!(r["threads"], 2);
    }
}
