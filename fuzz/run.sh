#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) and fails on the first crash, naming the
# input. A crash is fixed, then its input is kept under fuzz/regressions/<target>/, where
# `cargo test -p credledger-api --test fuzz_regressions` replays it on a stable compiler.
#
#   fuzz/run.sh [SECONDS]
#
# cargo-fuzz needs the compiler's unstable instrumentation flags: RUSTC_BOOTSTRAP=1 allows them on
# the stable toolchain. No sanitizer: the workspace forbids unsafe code, so the crashes to find
# are panics (and timeouts), which libFuzzer catches by itself.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
targets=(token_strings machine_key checkpoint_note export_lines json_body form_body)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz || { echo "install cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
fi

cargo fuzz build --sanitizer none
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "regressions/$target"
    echo "== $target (${seconds}s)" >&2
    if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>"target/$target.log"; then
        tail -n 40 "target/$target.log" >&2
        echo "fuzz target $target crashed: see fuzz/artifacts/$target/ (fix it, then keep the input in fuzz/regressions/$target/)" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "target/$target.log" >&2 || true
done
echo "every fuzz target ran ${seconds}s without a crash" >&2
