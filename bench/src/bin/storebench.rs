//! Store-level benchmarks of the harness (see bench/run.sh).

fn main() {}
