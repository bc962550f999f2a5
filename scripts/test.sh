#!/usr/bin/env bash
# Every check weir has: installs what is missing (cmake for Pingora's zlib-ng build,
# nginx-light for the differential limit_req and cache tests, redis-server for the Redis
# limit store tests; both tests start their own servers on free ports; chromium for the
# dashboard's browser test), then rustfmt, clippy with warnings as errors, every test of the
# workspace (unit tests and integration tests that start the real binary on free ports),
# and the dashboard's HTML/JS/CSS linters when node 20.19+ and npm are there.
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The dashboard's linters (html-validate, eslint, stylelint; on the page the dashboard
# test just rendered) come from npm and need node 20.19 or later (Debian 12's nodejs is
# 18): skipped, and said so, without it.
if command -v npm >/dev/null 2>&1 && node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then
  echo "== dashboard lint"
  bash scripts/lint-dashboard.sh
else
  echo "== dashboard lint: skipped (needs node 20.19+ and npm; see scripts/lint-dashboard.sh)"
fi
# cargo prints one "test result" line per test binary (the last is often a doc-test binary
# with 0 tests); close with the totals so the outcome is one line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
