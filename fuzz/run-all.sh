#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 600) each, one after another,
# starting from the seeds in fuzz/seeds/<target>/ and the corpus kept in
# fuzz/corpus/<target>/. Needs the nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
for target in command duration policy slack_payloads teams_activity; do
    mkdir -p "corpus/$target"
    echo "== $target, ${seconds}s"
    cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | grep -E "^#[0-9]+.*DONE|Done|ERROR|panicked|SUMMARY|crash-" || true
done
