#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with cargo: installs what the tests need
# (ffmpeg, a local S3-compatible server) when it is missing, then runs every test with
# DATABASE_URL set to a PostgreSQL server (scripts/postgres.sh: DATABASE_URL, the local
# server, or a throwaway cluster stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/install-test-deps.sh ]; then
  bash scripts/install-test-deps.sh
fi
bash scripts/postgres.sh cargo test --workspace --locked "$@"
# The OpenAPI document against the real daemon that serves it (target/debug/taskd, built above).
bash scripts/schemathesis.sh
# A short run of every fuzz target (scripts/fuzz.sh 3600 is the long one).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
