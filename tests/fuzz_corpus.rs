//! The fuzz corpora as a regression test on stable: every seed and every minimised
//! crash in `fuzz/corpus/<target>` goes through the fuzz target's entry point.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// At least this many inputs per corpus, so that an empty or misplaced corpus
/// cannot pass silently.
const MIN_INPUTS: usize = 10;

/// The inputs in `fuzz/<dir>`, as (path, bytes), sorted by path.
fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut inputs: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("readable corpus directory").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// Runs every input in `fuzz/<dir>` through `entry`, then fails naming all the
/// inputs that panicked.
fn run_all(dir: &str, entry: fn(&[u8])) {
    let inputs = inputs(dir);
    let failed: Vec<&str> = inputs
        .iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| entry(bytes))).is_err())
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(failed.is_empty(), "{} inputs failed: {failed:#?}", failed.len());
}

#[test]
fn each_corpus_holds_at_least_ten_inputs() {
    for dir in
        ["corpus/framer", "corpus/jid", "corpus/dns", "corpus/c2s", "corpus/s2s", "corpus/http", "corpus/websocket"]
    {
        let n = inputs(dir).len();
        assert!(n >= MIN_INPUTS, "fuzz/{dir} holds {n} inputs");
    }
}

#[test]
fn framer_corpus_frames_alike_in_chunks_and_reemits_fixed_points() {
    run_all("corpus/framer", wrenhub::fuzzing::framer_chunked);
}

#[test]
fn jid_corpus_parses_idempotently() {
    run_all("corpus/jid", wrenhub::fuzzing::jid_roundtrip);
}

#[test]
fn dns_corpus_parses_without_panics_and_round_trips() {
    run_all("corpus/dns", wrenhub::fuzzing::dns_srv);
}

#[test]
fn c2s_corpus_runs_the_stream_state_machine_and_router_without_panics() {
    run_all("corpus/c2s", wrenhub::fuzzing::c2s_stream);
}

#[test]
fn s2s_corpus_runs_the_inbound_stream_and_router_without_panics() {
    run_all("corpus/s2s", wrenhub::fuzzing::s2s_stream);
}

#[test]
fn http_corpus_parses_heads_alike_in_pieces_and_grants_nothing_unsigned() {
    run_all("corpus/http", wrenhub::fuzzing::http_request);
}

#[test]
fn websocket_corpus_decodes_alike_in_pieces() {
    run_all("corpus/websocket", wrenhub::fuzzing::websocket_frames);
}
