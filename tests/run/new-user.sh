#!/usr/bin/env bash
# The new-user rehearsal CI runs first (.ci/run): what the README's quick start tells a new
# user, in a fresh clone of this checkout's HEAD with an empty Cargo home (CARGO_HOME), target
# directory and compilation cache; rustup's toolchains stay, as on a machine where Rust was
# just installed. `scripts/run` fetches, builds and serves from nothing; GET /events with the
# token it prints answers 200 and a POST 201; SIGINT to its process group (Ctrl-C) stops it
# with status 0 and leaves no runtime, PostgreSQL or listening port behind. The API's and
# PostgreSQL's ports are free ones (--listen, PG_PORT), so the rehearsal runs beside anything.
# Prints what it cost.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
# shellcheck source=scripts/common.sh
. scripts/common.sh
# shellcheck source=tests/run/lib.sh
. tests/run/lib.sh

began=$SECONDS
work=$(mktemp -d)
run_pid=
cleanup() {
    if [ -n "$run_pid" ]; then
        kill -TERM -- "-$run_pid" 2>/dev/null || true
        wait "$run_pid" 2>/dev/null || true
    fi
    # Under root a private clone keeps PostgreSQL's files under /var/tmp (scripts/run says where).
    pg_state=$(sed -nE 's#^local PostgreSQL on .* \(data in (/var/tmp/event-platform-postgres-[0-9]+)/postgres,.*#\1#p' "$work/run.out" 2>/dev/null)
    [ -z "$pg_state" ] || rm -rf "$pg_state"
    rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet "$root" "$work/app"
echo "new user: a fresh clone of $(git -C "$work/app" rev-parse --short HEAD), empty CARGO_HOME and target/"
api_port=$(free_port) pg_port=$(free_port)
cd "$work/app"
start_run "$work/run.out" env -u CARGO_TARGET_DIR CARGO_HOME="$work/cargo-home" XDG_CACHE_HOME="$work/cache" \
    PG_PORT="$pg_port" scripts/run --listen "127.0.0.1:$api_port"
wait_served "$work/run.out" 3000 "$work/auth.header"
echo "new user: $(grep '^serving with' "$work/run.out") after $(elapsed "$began")"
check_api
stop_run "$work/run.out" group
echo "new user: passed in $(elapsed "$began") (GET 200, POST 201, Ctrl-C left nothing)"
