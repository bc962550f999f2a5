#!/usr/bin/env bash
# Lints the admin dashboard's page: html-validate on the HTML weir renders (written by the
# dashboard browser test to target/tmp/dashboard.html; the test runs first when it is
# missing), eslint on proxy/assets/dashboard/dashboard.js, stylelint (standard config) on
# dashboard.css. The linters' exact versions are in scripts/dashboard-lint/package.json;
# they are installed there with npm on the first run. Needs node and npm.
# Usage: bash scripts/lint-dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."

lint=scripts/dashboard-lint
if [ ! -x "$lint/node_modules/.bin/html-validate" ] || [ ! -x "$lint/node_modules/.bin/eslint" ] ||
   [ ! -x "$lint/node_modules/.bin/stylelint" ]; then
  (cd "$lint" && npm install --no-audit --no-fund --no-save --loglevel=error)
fi
page=target/tmp/dashboard.html
if [ ! -f "$page" ]; then
  cargo test -p weir --locked --test dashboard
fi
assets=proxy/assets/dashboard
echo "== html-validate $page"
"$lint/node_modules/.bin/html-validate" -c "$lint/.htmlvalidate.json" "$page"
echo "== eslint $assets/dashboard.js"
"$lint/node_modules/.bin/eslint" -c "$lint/eslint.config.mjs" "$assets/dashboard.js"
echo "== stylelint $assets/dashboard.css"
"$lint/node_modules/.bin/stylelint" --config "$lint/.stylelintrc.json" "$assets/dashboard.css"
echo "dashboard lint: ok"
