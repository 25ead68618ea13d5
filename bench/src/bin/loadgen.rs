//! The HTTP load generator of the benchmark harness (see bench/run.sh).

fn main() {}
