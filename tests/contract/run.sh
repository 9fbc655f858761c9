#!/usr/bin/env bash
# The contract tests: the app against openapi.yaml and the Postman collection, from outside.
# Starts its own app (tests/src/bin/serve.rs: a throwaway PostgreSQL with a fresh database and
# devhost on a free port, removed when this script ends), then runs
#   1. newman: postman/event-management.postman_collection.json, every endpoint and the main
#      errors, with its assertions;
#   2. schemathesis: every operation of openapi.yaml fuzzed (examples, coverage, fuzzing and
#      stateful phases), each response checked for server errors and for status code, content
#      type, headers and body conforming to the spec, invalid data rejected, authentication
#      enforced, unlisted methods 405 with Allow, deleted resources gone; the internal dispatch
#      route in a run of its own with the notify token. One answer is expected although no
#      check accepts it: Spin refuses a header value that is not valid UTF-8 with an empty 500
#      before any component runs (devhost too), and schemathesis sends such values; hooks.py
#      drops the failures of exactly that case (tested by test_hooks.py) and the summary
#      counts them.
# Tools are pinned (tests/contract/package.json + package-lock.json, requirements.txt) and
# installed into target/contract-tools once; logs and reports go to target/contract.
#
#   tests/contract/run.sh             the tests
#   tests/contract/run.sh --install   only install the pinned tools (CI does it up front)
#
# Needs node + npm, python3 (with venv), cargo and PostgreSQL's server binaries; expects
# scripts/build to have built the components and devhost. Knobs: CONTRACT_MAX_EXAMPLES
# (schemathesis examples per operation, default 100) and CONTRACT_SEED (default fixed, so a run
# is repeatable; `random` for a new one each time).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
# The app runs from target/ (spin.toml's paths), whatever CARGO_TARGET_DIR says.
export CARGO_TARGET_DIR=$root/target
here=$root/tests/contract
tools=$root/target/contract-tools
work=$root/target/contract
max_examples=${CONTRACT_MAX_EXAMPLES:-100}
seed=${CONTRACT_SEED:-6}

rm -rf "$work"
mkdir -p "$work" "$tools"

# --- tools -------------------------------------------------------------------------------
if [ ! -x "$tools/node_modules/.bin/newman" ] || ! cmp -s "$here/package-lock.json" "$tools/package-lock.json"; then
    echo "contract: installing newman (npm ci)"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1 || {
        cat "$work/npm.log" >&2
        exit 1
    }
fi
venv=$tools/venv
if [ ! -x "$venv/bin/schemathesis" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    echo "contract: installing schemathesis (pip)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
if [ "${1:-}" = --install ]; then
    echo "contract: newman $("$tools/node_modules/.bin/newman" --version), $("$venv/bin/schemathesis" --version)"
    exit 0
fi

# --- the app -----------------------------------------------------------------------------
cargo build --locked --quiet -p e2e --bin serve
serve_pid=
stop_app() {
    trap - EXIT INT TERM
    if [ -n "$serve_pid" ]; then
        kill -TERM "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
}
trap stop_app EXIT
trap 'stop_app; exit 130' INT TERM
DEVHOST_LOG=$work/devhost.log target/debug/serve --env-file "$work/app.env" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 600); do
    [ -s "$work/app.env" ] && break
    if ! kill -0 "$serve_pid" 2>/dev/null; then
        echo "contract: the app did not start:" >&2
        cat "$work/serve.log" >&2
        exit 1
    fi
    sleep 0.2
done
[ -s "$work/app.env" ] || { echo "contract: the app did not start in 120 s" >&2; exit 1; }
# shellcheck source=/dev/null
. "$work/app.env"
echo "contract: app serving at $BASE_URL (fresh database)"

# --- 1. newman ---------------------------------------------------------------------------
newman_status=0
"$tools/node_modules/.bin/newman" run "$root/postman/event-management.postman_collection.json" \
    --environment "$root/postman/local.postman_environment.json" \
    --env-var "baseUrl=$BASE_URL" --env-var "token=$API_TOKEN" --env-var "notifyToken=$NOTIFY_TOKEN" \
    --color off --reporters cli,json --reporter-json-export "$work/newman.json" || newman_status=$?

# --- 2. schemathesis ---------------------------------------------------------------------
# Every check but two that misread this API on purpose:
# - positive_data_acceptance: a schema-valid request may rightly be refused by state (a stale
#   If-Match is 412, a reused Idempotency-Key 422, a cursor the API never issued 400);
# - ensure_resource_availability: a POST replayed by its Idempotency-Key answers the first
#   response, also when that event has since been deleted (so the "created" event is 404),
#   and schemathesis reuses short keys like "0" across scenarios.
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
checks=$checks,response_headers_conformance,negative_data_rejection,missing_required_header
checks=$checks,unsupported_method,allow_header_conformance,use_after_free,ignored_auth
seed_args=()
[ "$seed" = random ] || seed_args=(--seed "$seed")
hooks_status=0
"$venv/bin/python" "$here/test_hooks.py" >"$work/test_hooks.log" 2>&1 || {
    hooks_status=$?
    cat "$work/test_hooks.log" >&2
}
refusals=$work/spin-refusals.log
: >"$refusals"
schemathesis() {
    # Run from target/contract so its caches and reports stay there. One worker: with two
    # threads, CPython 3.11's ast module fails now and then inside hypothesis ("AST constructor
    # recursion depth mismatch", python/cpython#106905), a runtime error that fails the run.
    (cd "$work" && SCHEMATHESIS_HOOKS=$here/hooks.py SPIN_REFUSALS_LOG=$refusals \
        "$venv/bin/schemathesis" run "$root/openapi.yaml" --url "$BASE_URL" \
        --checks "$checks" --workers 1 "${seed_args[@]}" --generation-database none \
        --no-color --output-truncate true "$@")
}
fuzz_status=0
schemathesis -H "Authorization: Bearer $API_TOKEN" --exclude-operation-id dispatchNotifications \
    --max-examples "$max_examples" --report junit --report-junit-path "$work/schemathesis.xml" ||
    fuzz_status=$?
dispatch_status=0
schemathesis -H "Authorization: Bearer $NOTIFY_TOKEN" --include-operation-id dispatchNotifications \
    --phases examples,coverage,fuzzing --max-examples 10 \
    --report junit --report-junit-path "$work/schemathesis-dispatch.xml" ||
    dispatch_status=$?

stop_app

# --- summary: one closing line of counts -------------------------------------------------
read -r newman_passed newman_failed < <(node -e '
    try {
        const a = require(process.argv[1]).run.stats.assertions;
        console.log(a.total - a.failed, a.failed);
    } catch (e) { console.log(0, 1); }' "$work/newman.json")
read -r fuzz_passed fuzz_failed < <("$venv/bin/python" - "$work"/schemathesis.xml "$work"/schemathesis-dispatch.xml <<'PY'
import sys, xml.etree.ElementTree as ET
passed = failed = 0
for path in sys.argv[1:]:
    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except Exception:
        failed += 1
        continue
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is None:
            passed += 1
print(passed, failed)
PY
)
# A tool that failed without saying which test did still fails the run.
[ "$newman_status" = 0 ] || [ "$newman_failed" != 0 ] || newman_failed=1
[ "$fuzz_status" = 0 ] && [ "$dispatch_status" = 0 ] || [ "$fuzz_failed" != 0 ] || fuzz_failed=1
[ "$hooks_status" = 0 ] || fuzz_failed=$((fuzz_failed + 1))
echo "newman: $newman_passed assertions passed, $newman_failed failed (exit $newman_status)"
echo "schemathesis: $fuzz_passed operations passed, $fuzz_failed failed (exit $fuzz_status, dispatch $dispatch_status; seed $seed, $max_examples examples)"
echo "schemathesis: $(wc -l <"$refusals") failures were Spin's empty 500 for a header value that is not UTF-8, expected (hooks.py; $refusals); hooks' tests: exit $hooks_status"
passed=$((newman_passed + fuzz_passed))
failed=$((newman_failed + fuzz_failed))
echo "contract: $passed passed, $failed failed"
[ "$failed" = 0 ]
