//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and their regression
//! corpus, which `cargo test` runs on stable (`tests/fuzz_corpus.rs`).

pub use crate::jid::fuzz_roundtrip as jid_roundtrip;
