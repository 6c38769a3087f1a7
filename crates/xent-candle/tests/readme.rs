//! The README's candle example is marked `ignore` there (the `xent` crate, which runs
//! the README's other blocks as doctests, does not depend on candle); it runs as a
//! doctest of this crate's documentation. This test keeps the two copies identical.

/// The lines of the first ```` ```rust,ignore ```` block after `heading`.
fn readme_block(readme: &str, heading: &str) -> Vec<String> {
    let section = &readme[readme.find(heading).expect("the section exists")..];
    let body = section
        .split_once("```rust,ignore\n")
        .expect("a rust,ignore block")
        .1;
    let block = body.split_once("```").expect("a closed block").0;
    block.lines().map(str::to_string).collect()
}

/// The lines of the doc example after `heading` in `//!` docs, hidden lines dropped.
fn doc_block(src: &str, heading: &str) -> Vec<String> {
    let docs: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let start = docs
        .iter()
        .position(|l| *l == heading)
        .expect("the doc section exists");
    let open = start + docs[start..].iter().position(|l| *l == "```").unwrap() + 1;
    let close = open + docs[open..].iter().position(|l| *l == "```").unwrap();
    docs[open..close]
        .iter()
        .filter(|l| !l.starts_with("# "))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn readme_candle_example_is_the_crate_doctest() {
    let readme = include_str!("../../../README.md");
    let lib = include_str!("../src/lib.rs");
    let want = readme_block(readme, "## Using xent from candle");
    let got = doc_block(lib, "## The README's example");
    assert!(want.len() > 5);
    assert_eq!(
        got, want,
        "README.md and crates/xent-candle/src/lib.rs differ"
    );
}
