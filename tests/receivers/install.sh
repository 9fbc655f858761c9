#!/usr/bin/env bash
# Installs the pinned tools of the receivers nobody here wrote (tests/receivers): Flask, the
# Standard Webhooks reference library and the CloudEvents Python SDK into a venv
# (requirements.txt), the CloudEvents JavaScript SDK with npm (package.json +
# package-lock.json), both under target/receivers-tools. Idempotent: does nothing when what is
# installed matches the pins, so the test command and the e2e tests (receivers.rs) may both
# call it; CI calls it up front.
#
# Needs python3 (with venv) and node + npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/receivers
tools=target/receivers-tools
venv=$tools/venv
mkdir -p "$tools"
# One install at a time (the test command and a test run may overlap).
exec 9>"$tools/.lock"
flock 9

if [ ! -d "$tools/node_modules/cloudevents" ] || ! cmp -s "$here/package-lock.json" "$tools/package-lock.json"; then
    echo "receivers: installing the CloudEvents JavaScript SDK (npm ci)"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >"$tools/npm.log" 2>&1 || {
        cat "$tools/npm.log" >&2
        rm -f "$tools/package-lock.json"
        exit 1
    }
fi
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    echo "receivers: installing Flask, standardwebhooks and the CloudEvents Python SDK (pip)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
