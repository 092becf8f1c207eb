#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (fuzz/: mp4_probe, asset_url, journal, stored_values,
# request_bodies, h264_leads) for SECONDS each (default 20; the long run is e.g. `scripts/fuzz.sh 3600`).
# Needs the nightly toolchain beside stable (cargo-fuzz's sanitizer flags); installs cargo-fuzz
# when missing. New inputs go to a scratch corpus, so the committed seeds stay as they are;
# a crash leaves its input under fuzz/artifacts/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: no nightly toolchain here (rustup toolchain list); fuzzing NOT run" >&2
  [ "${FUZZ_REQUIRED:-0}" = "1" ] && exit 1
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (crates.io)..." >&2
  cargo install cargo-fuzz --locked --quiet
fi
scratch="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-corpus.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
targets="${FUZZ_TARGETS:-mp4_probe asset_url journal stored_values request_bodies h264_leads}"
cargo +nightly fuzz build --release >/dev/null 2>"$scratch/build.log" || {
  cat "$scratch/build.log"; exit 1; }
for target in $targets; do
  mkdir -p "$scratch/$target"
  cargo +nightly fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    > "$scratch/$target.log" 2>&1 || { tail -n 60 "$scratch/$target.log"; exit 1; }
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$target.log" | tail -n 1)"
  echo "fuzz $target: ${runs:-?} executions in ${seconds} s, no crash"
done
