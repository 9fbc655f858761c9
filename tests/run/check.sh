#!/usr/bin/env bash
# Tests of the run command, scripts/run (part of the test command, scripts/test):
#   1. start-up errors a user can act on: each stops at once with status 1 and one line on
#      stderr naming the cause and the fix (and the log): PostgreSQL's binaries missing, its
#      port or the API's taken, the wasm32-wasip2 target missing with rustup offline, a
#      DATABASE_URL that does not connect (its password masked), a short token, no usable Spin
#      for --runtime spin;
#   2. a run on devhost (--runtime devhost, with a Spin on PATH) from an earlier run's state: a
#      PostgreSQL that trusted every local connection is moved to password authentication, the
#      tokens are kept, the schema it migrated before the database roles existed passes to the
#      migration role; the API answers the printed token; the functions' roles log in with the
#      generated passwords; no token or password is on any command line; Ctrl-C (SIGINT to the
#      process group) stops everything;
#   3. a run on Spin, chosen because a Spin 3.6+ is on PATH (tests/run/fake-spin, which records
#      its arguments and environment and serves with devhost): `spin build`, `spin up` with the
#      same variables and database; the periodic dispatch runs and succeeds without a token on
#      its command line; SIGINT to scripts/run alone stops everything too.
# Expects scripts/build to have built devhost and the components, and PostgreSQL's server
# binaries where scripts/run finds them. Every run here uses free ports and a state directory
# of its own (RUN_STATE_DIR), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
# shellcheck source=scripts/common.sh
. scripts/common.sh
# shellcheck source=tests/run/lib.sh
. tests/run/lib.sh

tmp=$(mktemp -d)
# Under root PostgreSQL runs as the postgres user, which must reach the state directories.
chmod 755 "$tmp"
run_pid=
holders=()
cleanup() {
    if [ -n "$run_pid" ]; then
        kill -TERM -- "-$run_pid" 2>/dev/null || true
        wait "$run_pid" 2>/dev/null || true
    fi
    for pid in "${holders[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# hold_port: listens on a free port, as another program would; sets held_port.
hold_port() {
    local file=$tmp/held-$RANDOM
    python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(3600)' "$file" >/dev/null 2>&1 &
    holders+=($!)
    until [ -s "$file" ]; do sleep 0.1; done
    held_port=$(cat "$file")
}

# expect_error NAME PATTERN [VAR=VALUE...] -- [ARGUMENTS...]: scripts/run with that environment
# and those arguments (and a fresh state directory, case_state) stops with status 1 and exactly
# one line on stderr, `error: ` then a match of PATTERN (an extended regular expression).
cases=0
expect_error() {
    local name=$1 pattern=$2 vars=() status=0
    shift 2
    while [ "$1" != -- ]; do
        vars+=("$1")
        shift
    done
    shift
    cases=$((cases + 1))
    case_state=$tmp/state-$cases
    env RUN_STATE_DIR="$case_state" "${vars[@]}" timeout 300 scripts/run "$@" \
        >"$tmp/out" 2>"$tmp/err" </dev/null || status=$?
    if [ "$status" != 1 ] || [ "$(wc -l <"$tmp/err")" != 1 ] || ! grep -Eq "^error: $pattern" "$tmp/err"; then
        cat "$tmp/out" "$tmp/err" >&2
        fail "$name: expected status 1 and one line matching /error: $pattern/ on stderr; got status $status and the output above"
    fi
    echo "ok: $name: $(cat "$tmp/err")"
}

# --- 1. start-up errors ----------------------------------------------------------------------
echo "run: start-up errors"
mkdir "$tmp/empty"
expect_error "PostgreSQL's binaries missing" \
    "PG_BINDIR=$tmp/empty holds no PostgreSQL server binaries \(initdb, pg_ctl, postgres\): point it at their directory" \
    PG_BINDIR="$tmp/empty" -- --listen "127.0.0.1:$(free_port)"

hold_port
expect_error "PostgreSQL's port taken" \
    "PostgreSQL's port 127\.0\.0\.1:$held_port is already in use \(held by python3, pid [0-9]+\): .*PG_PORT=$((held_port + 1)) scripts/run$" \
    PG_PORT="$held_port" -- --listen "127.0.0.1:$(free_port)"

hold_port
expect_error "the API's port taken" \
    "127\.0\.0\.1:$held_port is already in use \(held by python3, pid [0-9]+\): .*scripts/run --listen 127\.0\.0\.1:$((held_port + 1))$" \
    -- --listen "127.0.0.1:$held_port"

mkdir "$tmp/offline-rustup"
cat >"$tmp/offline-rustup/rustup" <<'EOF'
#!/bin/sh
# rustup without the wasm32-wasip2 target and without a network.
case "$*" in
    "target list --installed") echo x86_64-unknown-linux-gnu ;;
    "target add wasm32-wasip2") echo "error: could not download file from 'https://static.rust-lang.org/dist/channel-rust-stable.toml.sha256': offline" >&2; exit 1 ;;
    *) exit 1 ;;
esac
EOF
chmod +x "$tmp/offline-rustup/rustup"
expect_error "wasm32-wasip2 missing, rustup offline" \
    "the Rust target wasm32-wasip2 is missing and rustup could not add it \(offline\?\); see $tmp/state-[0-9]+/rustup\.log: run \`rustup target add wasm32-wasip2\` once online, then retry$" \
    PATH="$tmp/offline-rustup:$PATH" -- --listen "127.0.0.1:$(free_port)"
grep -q 'could not download' "$case_state/rustup.log" || fail "rustup's output is not in $case_state/rustup.log"

nobody=$(free_port)
expect_error "DATABASE_URL does not connect" \
    "cannot connect to DATABASE_URL \(postgres://events:\*\*\*@127\.0\.0\.1:$nobody/events\): connection to server at \"127\.0\.0\.1\", port $nobody failed: Connection refused; .*unset DATABASE_URL" \
    DATABASE_URL="postgres://events:not-this-password@127.0.0.1:$nobody/events" -- --listen "127.0.0.1:$(free_port)"
! grep -q not-this-password "$tmp/out" "$tmp/err" || fail "the DATABASE_URL's password was printed"

expect_error "a short token" \
    "API_TOKEN from the environment is 9 bytes and the app refuses tokens under 32 bytes: " \
    API_TOKEN=too-short -- --listen "127.0.0.1:$(free_port)"

expect_error "a port that is not fixed" "--listen takes HOST:PORT with a fixed port" -- --listen 127.0.0.1:0

# --- the runtime's choice -------------------------------------------------------------------
echo "run: the runtime's choice"
mkdir "$tmp/old-spin" "$tmp/spin"
ln -s "$root/tests/run/fake-spin" "$tmp/old-spin/spin"
ln -s "$root/tests/run/fake-spin" "$tmp/spin/spin"
ln -s "$root/tests/run/recording-curl" "$tmp/spin/curl"
export FAKE_SPIN_LOG=$tmp/spin.log FAKE_SPIN_DEVHOST=$root/target/release/devhost
REAL_CURL=$(command -v curl)
export REAL_CURL
expect_error "--runtime spin with a Spin older than 3.6" \
    "--runtime spin needs Spin 3\.6 or later, and PATH has spin 3\.5\.2: upgrade it .* or use --runtime devhost$" \
    PATH="$tmp/old-spin:$PATH" FAKE_SPIN_VERSION=3.5.2 -- --listen "127.0.0.1:$(free_port)" --runtime spin
expect_error "a Spin older than 3.6 is passed over (then a short token stops the run)" "NOTIFY_TOKEN " \
    PATH="$tmp/old-spin:$PATH" FAKE_SPIN_VERSION=3.5.2 NOTIFY_TOKEN=short -- --listen "127.0.0.1:$(free_port)"
[ "$(head -n 1 "$tmp/out")" = "runtime: devhost (spin 3.5.2 on PATH is older than 3.6)" ] ||
    fail "with spin 3.5.2 on PATH, the run said: $(head -n 1 "$tmp/out")"
if command -v spin >/dev/null; then
    echo "skipped: --runtime spin without a Spin on PATH (this machine has $(command -v spin))"
else
        expect_error "--runtime spin without a Spin on PATH" \
        "--runtime spin needs the Spin CLI \(3\.6 or later\) on PATH, and there is none: install it .* or use --runtime devhost$" \
        -- --listen "127.0.0.1:$(free_port)" --runtime spin
fi
[ ! -e "$FAKE_SPIN_LOG" ] || fail "spin build or spin up ran for a Spin older than 3.6: $(cat "$FAKE_SPIN_LOG")"

# --- checks of a serving run ------------------------------------------------------------------
# secrets_of STATE: the run's tokens and database passwords, one a line, in $tmp/secrets (a
# file, so that grep gets them with -f, not on its command line).
secrets_of() {
    {
        sed -n 's/^API_TOKEN=//p; s/^NOTIFY_TOKEN=//p' "$1/tokens.env"
        sed -n 's/^[A-Z_]*_DB_PASSWORD=//p' "$1/db-roles.env"
        cat "$1/postgres.password"
    } >"$tmp/secrets"
}

# TCP connections need the password: none is refused, the generated one (in the run's pgpass)
# is accepted; no rule of pg_hba.conf trusts anyone.
check_password_auth() {
    local state=$1 port=$2 out
    ! grep -Eq '^[^#]*[[:space:]]trust([[:space:]]|$)' "$state/postgres/pg_hba.conf" ||
        fail "pg_hba.conf still trusts connections: $(grep -v '^#' "$state/postgres/pg_hba.conf")"
    if out=$(PGPASSFILE=$tmp/no-such-file psql "postgres://postgres@127.0.0.1:$port/events" -X -w -tAc 'SELECT 1' 2>&1); then
        fail "PostgreSQL accepted a connection without a password"
    fi
    case "$out" in *"no password supplied"*) ;; *) fail "without a password PostgreSQL said: $out" ;; esac
    out=$(PGPASSFILE=$state/pgpass psql "postgres://postgres@127.0.0.1:$port/events" -X -w -tAc 'SELECT count(*) > 0 FROM events' 2>&1) ||
        fail "the generated password was refused: $out"
    [ "$out" = t ] || fail "the database holds no event after a POST: $out"
}

# The app's database roles (README.md, "Database roles"): the migration role owns every table,
# and the functions' roles log in with the passwords the run generated into db-roles.env.
check_roles() {
    local state=$1 port=$2 role variable out
    out=$(PGPASSFILE=$state/pgpass psql "postgres://postgres@127.0.0.1:$port/events" -X -w -tAc \
        "SELECT string_agg(DISTINCT tableowner, ' ') FROM pg_tables WHERE schemaname = 'public'" 2>&1)
    [ "$out" = event_platform_migrator ] || fail "the tables belong to $out, not the migration role"
    for role in event_fn notify_fn; do
        variable=${role^^}_DB_PASSWORD
        (umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$port" "$role" \
            "$(sed -n "s/^$variable=//p" "$state/db-roles.env")" >"$tmp/roles.pgpass")
        out=$(PGPASSFILE=$tmp/roles.pgpass psql "postgres://$role@127.0.0.1:$port/events" -X -w -tAc \
            'SELECT current_user' 2>&1) || fail "$role's generated password was refused: $out"
    done
}

# The state directory and every secret in it are the user's alone.
check_private() {
    local state=$1 file mode
    [ "$(stat -c %a "$state")" = 700 ] || fail "$state is mode $(stat -c %a "$state"), not 700"
    for file in tokens.env postgres.password db-roles.env pgpass api.header notify.header; do
        mode=$(stat -c %a "$state/$file")
        [ "$mode" = 600 ] || fail "$state/$file is mode $mode, not 600"
    done
}

# No secret on any process's command line, sampled for three seconds.
check_command_lines() {
    secrets_of "$1"
    : >"$tmp/ps"
    for _ in 1 2 3 4 5 6; do
        ps -eo args >>"$tmp/ps"
        sleep 0.5
    done
    ! grep -F -f "$tmp/secrets" "$tmp/ps" >"$tmp/leaks" || fail "a secret is on a command line: $(head -c 300 "$tmp/leaks")"
}

# The same while the dispatch runs every second; the dispatch itself ran (at least twice),
# succeeded, and sent its token from the header file.
check_secrets_and_dispatch() {
    local state=$1 curl_log=$2
    check_command_lines "$state"
    grep 'notifications/dispatch' "$curl_log" >"$tmp/dispatches" || true
    [ "$(wc -l <"$tmp/dispatches")" -ge 2 ] || fail "the periodic dispatch did not run (curl calls: $(cat "$curl_log"))"
    ! grep -v -e "-H @$state/notify.header .* => 0\$" "$tmp/dispatches" >"$tmp/odd" ||
        fail "a dispatch failed or did not send its header from the file: $(head -n 3 "$tmp/odd")"
    ! grep -F -f "$tmp/secrets" "$curl_log" >/dev/null || fail "a token is on curl's command line"
}

# --- 2. devhost, from an earlier run's state ----------------------------------------------------
echo "run: devhost (--runtime devhost with a Spin on PATH), from an earlier run's state"
state=$tmp/earlier
mkdir "$state"
[ "$(id -u)" != 0 ] || chown postgres: "$state"
pg_bin=$(find_pg_bin)
as_pg "$pg_bin/initdb" --auth=trust --username=postgres --encoding=UTF8 -D "$state/postgres" >/dev/null
# Its database as a run before the database roles left it: migrated by the superuser.
mkdir "$tmp/before-roles"
cp sql/00[123]_*.sql "$tmp/before-roles/"
earlier_port=$(free_port)
as_pg "$pg_bin/pg_ctl" -D "$state/postgres" -l "$state/earlier.log" -w start \
    -o "-p $earlier_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$state" >/dev/null
as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$earlier_port" -U postgres events
DATABASE_URL="postgres://postgres@127.0.0.1:$earlier_port/events" PATH="$pg_bin:$PATH" \
    sh sql/migrate.sh "$tmp/before-roles" >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$state/postgres" -m fast -w stop >/dev/null
old_api_token=$(random_hex)
(umask 077 && printf 'API_TOKEN=%s\nNOTIFY_TOKEN=%s\n' "$old_api_token" "$(random_hex)" >"$state/tokens.env")
api_port=$(free_port) pg_port=$(free_port)
# A dispatch every 30 s: Ctrl-C comes while it sleeps, and its sleep must not outlive the run.
start_run "$tmp/devhost.out" env RUN_STATE_DIR="$state" PATH="$tmp/spin:$PATH" PG_PORT="$pg_port" \
    DISPATCH_EVERY=30 CURL_LOG="$tmp/curl-devhost.log" scripts/run --listen "127.0.0.1:$api_port" --runtime devhost
wait_served "$tmp/devhost.out" 1800 "$tmp/devhost.auth"
grep -q '^setting password authentication on the local PostgreSQL from an earlier run' "$tmp/devhost.out" ||
    fail "the earlier run's PostgreSQL was not moved to password authentication"
grep -q "^serving with devhost on http://127.0.0.1:$api_port (--runtime devhost)$" "$tmp/devhost.out" ||
    fail "the run did not say it serves with devhost: $(grep '^serving' "$tmp/devhost.out")"
[ ! -e "$FAKE_SPIN_LOG" ] || fail "--runtime devhost ran spin: $(cat "$FAKE_SPIN_LOG")"
[ "$(cat "$tmp/devhost.auth")" = "Authorization: Bearer $old_api_token" ] || fail "the earlier run's API token was not kept"
check_api
check_password_auth "$state" "$pg_port"
check_roles "$state" "$pg_port"
check_private "$state"
check_command_lines "$state"
stop_run "$tmp/devhost.out" group
[ "$(tail -n 1 "$tmp/devhost.out")" = "stopped the local PostgreSQL" ] ||
    fail "the run did not end by stopping its PostgreSQL: $(tail -n 3 "$tmp/devhost.out")"
echo "ok: devhost served the printed token, PostgreSQL moved to passwords, the earlier schema to the roles, no secret on a command line, Ctrl-C left nothing"

# --- 3. Spin, chosen from PATH ----------------------------------------------------------------
echo "run: Spin 3.6.3 on PATH (a stand-in serving with devhost), a fresh state"
state=$tmp/fresh
api_port=$(free_port) pg_port=$(free_port)
start_run "$tmp/spin.out" env RUN_STATE_DIR="$state" PATH="$tmp/spin:$PATH" PG_PORT="$pg_port" \
    DISPATCH_EVERY=1 CURL_LOG="$tmp/curl-spin.log" scripts/run --listen "127.0.0.1:$api_port"
wait_served "$tmp/spin.out" 600 "$tmp/spin.auth"
[ "$(head -n 1 "$tmp/spin.out")" = "runtime: Spin 3.6.3 (Spin 3.6.3 is on PATH; --runtime devhost to use devhost)" ] ||
    fail "the run did not choose Spin: $(head -n 1 "$tmp/spin.out")"
grep -q "^serving with Spin 3.6.3 on http://127.0.0.1:$api_port " "$tmp/spin.out" ||
    fail "the run did not say it serves with Spin: $(grep '^serving' "$tmp/spin.out")"
grep '^args: ' "$FAKE_SPIN_LOG" >"$tmp/spin-calls"
printf 'args: build --from spin.toml\nargs: up --from spin.toml --listen 127.0.0.1:%s\n' "$api_port" |
    cmp -s - "$tmp/spin-calls" || fail "spin was not called as \`spin build\` then \`spin up\`: $(cat "$tmp/spin-calls")"
# The variables spin up got: the run's database (as each function's role, with its password),
# tokens and settings.
sed -n '/^args: up /,$p' "$FAKE_SPIN_LOG" >"$tmp/spin-up"
(
    umask 077
    sed -nE "s#^(EVENT_FN|NOTIFY_FN)_DB_PASSWORD=(.*)#\\1 \\2#p" "$state/db-roles.env" | while read -r role password; do
        printf 'SPIN_VARIABLE_%s_DB_URL=postgres://%s:%s@127.0.0.1:%s/events?sslmode=disable\n' \
            "$role" "${role,,}" "$password" "$pg_port"
    done
    printf 'SPIN_VARIABLE_DB_HOST=127.0.0.1\nSPIN_VARIABLE_DB_PORT=%s\n' "$pg_port"
    sed -n 's/^API_TOKEN=/SPIN_VARIABLE_API_TOKEN=/p; s/^NOTIFY_TOKEN=/SPIN_VARIABLE_NOTIFY_TOKEN=/p' "$state/tokens.env"
    echo SPIN_VARIABLE_ALLOW_PRIVATE_WEBHOOKS=true
) >"$tmp/expected-variables"
[ "$(grep -cFx -f "$tmp/expected-variables" "$tmp/spin-up")" = 7 ] ||
    fail "spin up did not get the run's variables (it got: $(sed -n 's/=.*//p' "$tmp/spin-up" | tr '\n' ' '))"
check_api
check_password_auth "$state" "$pg_port"
check_roles "$state" "$pg_port"
check_private "$state"
check_secrets_and_dispatch "$state" "$tmp/curl-spin.log"
stop_run "$tmp/spin.out" process
echo "ok: Spin was chosen and called with the run's variables, the same database and dispatch; SIGINT left nothing"
echo "run: all checks passed"
