//! The fuzz targets' bodies (`fuzz/src/lib.rs`, shared with `cargo fuzz`) over the seed corpus
//! `fuzz/corpus/<target>/`, on stable, as part of the workspace's tests: a seed that panics
//! fails here before anyone runs the fuzzer.

#[path = "../../../fuzz/src/lib.rs"]
mod targets;

use targets::{Reached, run_corpus};

#[test]
fn fuzz_seed_corpus_runs_without_panics_and_reaches_rating() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let results = run_corpus(&corpus);
    assert!(results.len() >= 10, "seed corpus too small: {results:?}");
    for (target, name, reached) in &results {
        let must_quote = (target == "parse_plan" && name.starts_with("example-"))
            || name == "every-metric.ndjson";
        if must_quote {
            assert_eq!(*reached, Reached::Quoted, "{target}/{name}");
        }
    }
}
