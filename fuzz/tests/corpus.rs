//! The fuzz targets over the seed corpus, on stable: `cargo test --manifest-path fuzz/Cargo.toml`.

use ratecard_fuzz::{Reached, run_corpus};

#[test]
fn seed_corpus_runs_without_panics_and_reaches_rating() {
    let results = run_corpus(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    for (target, name, reached) in &results {
        let must_quote = (target == "parse_plan" && name.starts_with("example-"))
            || name == "every-metric.ndjson";
        if must_quote {
            assert_eq!(*reached, Reached::Quoted, "{target}/{name}");
        }
    }
    assert!(
        results
            .iter()
            .any(|(t, _, r)| t == "parse_event" && *r == Reached::Quoted)
    );
}
