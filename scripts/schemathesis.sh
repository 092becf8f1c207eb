#!/usr/bin/env bash
# schemathesis against /openapi.json of a real taskd, every check enabled, a bounded number of
# examples per operation (ST_MAX_EXAMPLES, default 25). Fails on any failure, including
# "schema-valid request rejected". Needs target/debug/taskd (cargo build -p taskd) and the
# venv that install-test-deps.sh makes.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
deps_dir="${TEST_DEPS_DIR:-$root/target/test-deps}"
st="$deps_dir/schemathesis/bin/st"
taskd="${TASKD_BIN:-$root/target/debug/taskd}"
work="$(mktemp -d "${TMPDIR:-/tmp}/taskd-schemathesis.XXXXXX")"
cleanup() {
  if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/taskd.toml" <<'TOML'
[[api_keys]]
key = "schemathesis-key-0123456789"
tenant = "acme"
[products.adbreaks]
[webhooks]
# Subscriptions to loopback are accepted (the generated URLs name the discard port) and this
# node sends nothing: schemathesis checks the routes, not deliveries.
allow_private_addresses = true
dispatch = false
TOML
"$taskd" serve --listen 127.0.0.1:0 --config "$work/taskd.toml" --data-dir "$work/data" \
  --media-root "$work/media" > "$work/stdout" 2> "$work/stderr" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "taskd listening on" "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
url="$(sed -n 's/^taskd listening on //p' "$work/stdout")"
[ -n "$url" ] || { echo "taskd did not start:"; cat "$work/stderr"; exit 1; }
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$root/scripts" \
  "$st" --config-file "$root/scripts/schemathesis.toml" run "$url/openapi.json" \
  --checks all --max-examples "${ST_MAX_EXAMPLES:-25}" --seed "${ST_SEED:-1}" --no-color \
  --report ndjson --report-ndjson-path "$work/events.ndjson" > "$work/report.txt" 2>&1 || status=$?
tail -n 12 "$work/report.txt"
if [ "${status:-0}" -ne 0 ]; then
  cat "$work/report.txt"
  echo "schemathesis found failures (taskd stderr follows)"; tail -n 40 "$work/stderr"
  exit 1
fi
