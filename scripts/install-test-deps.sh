#!/usr/bin/env bash
# Installs what the tests need when it is missing: ffmpeg/ffprobe, Chromium and its WebDriver
# (Debian packages: the console's browser tests) and a local S3-compatible server (moto, from
# PyPI, in a venv under target/test-deps). Idempotent and quiet
# when everything is there. Needs only the package registries (apt, PyPI).
# `install-test-deps.sh ffmpeg` installs ffmpeg only (what the quickstart needs).
set -euo pipefail
cd "$(dirname "$0")/.."
deps_dir="${TEST_DEPS_DIR:-$PWD/target/test-deps}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v ffprobe >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1; then
  echo "installing ffmpeg (apt)..." >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq ffmpeg >/dev/null
fi

if [ "${1:-}" = "ffmpeg" ]; then
  exit 0
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (apt)..." >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -x "$deps_dir/moto/bin/moto_server" ]; then
  echo "installing moto[server] into $deps_dir/moto (PyPI)..." >&2
  if ! python3 -m venv "$deps_dir/moto" 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$deps_dir/moto"
  fi
  "$deps_dir/moto/bin/pip" install -q --disable-pip-version-check 'moto[server]'
fi

if [ ! -x "$deps_dir/schemathesis/bin/st" ]; then
  echo "installing schemathesis into $deps_dir/schemathesis (PyPI)..." >&2
  python3 -m venv "$deps_dir/schemathesis"
  "$deps_dir/schemathesis/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
